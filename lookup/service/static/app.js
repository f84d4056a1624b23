// The desk page of `lookup serve`: one lookup with live progress, this tab's lookups, batch jobs.
// No framework, no build step: plain DOM. Every API call sends the token kept in
// sessionStorage; numbers stay masked until the operator asks to reveal one, and the
// list of this session's lookups keeps masked numbers only (sessionStorage: this tab).
"use strict";

const T = {
  zh: {
    title: "号码查单 · lookup", skip: "跳到查询表单",
    "token.h": "访问令牌", "token.label": "令牌（向管理员索取，只保存在本标签页）",
    "token.save": "保存令牌", "token.forget": "更换令牌",
    "token.none": "请先输入访问令牌。", "token.checking": "正在验证令牌…",
    "token.ok": "令牌有效，已保存在本标签页。", "token.off": "此服务未启用令牌（仅限本机访问）。",
    "token.missing": "服务要求令牌：请在上方输入访问令牌。",
    "token.wrong": "令牌错误：服务不接受这个令牌，请核对后重新输入（或向管理员索取）。",
    "lookup.h": "查找一个号码", "lookup.submit": "查找", "lookup.running": "查找中…",
    "f.mask": "掩码号码（必填）", "f.mask.help": "如 138****1234、138xxxx1234；隐藏位用 * x ? 表示",
    "f.mask.empty": "请输入掩码号码，如 138****1234",
    "f.city": "城市", "f.province": "省份", "f.area_code": "区号", "f.zip": "邮编",
    "f.carrier": "运营商", "f.carrier.any": "不限", "f.carrier.cm": "移动", "f.carrier.cu": "联通",
    "f.carrier.ct": "电信", "f.carrier.cb": "广电",
    "f.mode": "模式", "f.mode.first": "找到第一个即停止", "f.mode.all": "找出该层全部匹配",
    "progress.h": "进度", "progress.tier": "层级", "progress.candidates": "候选",
    "progress.answered": "已应答", "progress.state": "状态",
    "tier.city": "本市", "tier.province": "本省其他城市", "tier.national": "全国其他地区",
    "tier.unlocated": "未定位号段",
    "ts.pending": "等待", "ts.running": "进行中", "ts.done": "完成", "ts.empty": "无候选",
    "ts.negative": "无订单", "ts.hit": "命中", "ts.inconclusive": "无法确定", "ts.aborted": "中止",
    "ts.skipped": "未执行",
    "api.ok": "正常", "api.throttled": "接口限流，已放慢", "api.paused": "暂停，等待接口",
    "api.down": "接口不可用，等待恢复", "api.probing": "正在探测接口是否恢复",
    "live": "已核查 {answered} 个号码，每秒 {rate} 个，接口状态：{state}",
    "result.h": "结果", "result.phone": "号码", "result.reveal": "显示完整号码",
    "result.tier": "层级", "result.region": "地区", "result.carrier": "运营商",
    "result.numbers": "核查号码", "result.requests": "接口请求", "result.time": "用时", "result.seconds": "{s} 秒",
    "result.unlocated": "未定位号段（地区未知）",
    "result.orders": "订单", "orders.n": "{n} 个订单", "orders.one": "1 个订单", "orders.some": "有订单",
    "result.copy": "复制号码", "copy.ok": "已复制", "copy.fail": "无法自动复制：号码已选中，请按 Ctrl+C",
    "history.h": "本次会话的查询", "history.help": "只有掩码号码，只保存在本标签页；关闭标签页即清除。",
    "history.clear": "清空列表",
    "st.matched": "已找到", "st.not_found": "未找到", "st.inconclusive": "无法确定",
    "st.api_error": "接口错误",
    "adv.inconclusive": "部分候选号码因接口故障没能查询，所以不能当作“未找到”。请稍后用同样的条件再查一次；如果反复出现，请联系订单接口的负责人。",
    "adv.api_error": "订单接口拒绝了查询或无法使用，本次没有答案。请稍后再试；如果持续出现，请把时间和掩码告诉管理员，检查接口凭证和服务日志。",
    "adv.not_found": "所有候选号码都没有订单：请核对掩码和地区提示是否正确。",
    "err.network": "无法连接服务：{msg}", "err.server": "服务出错（{status}）：{msg}",
    "batch.h": "批量查询", "batch.file": "文件：CSV（含 mask 列，UTF-8 或 GB18030）或 JSONL",
    "batch.submit": "上传并开始", "batch.nofile": "请选择一个 CSV 或 JSONL 文件。",
    "job.queued": "排队中", "job.running": "运行中", "job.done": "已完成", "job.cancelled": "已取消",
    "job.failed": "失败", "job.progress": "进度", "job.rows": "{done} / {total} 行（{pct}%）",
    "job.eta": "预计剩余 {eta}", "job.cancel": "取消任务",
    "job.created": "提交 {t}", "job.started": "开始 {t}", "job.finished": "结束 {t}",
    "job.csv": "下载结果 CSV", "job.jsonl": "下载结果 JSONL", "job.reconnecting": "正在重新连接服务…",
    "c.matched": "已找到", "c.not_found": "未找到", "c.invalid": "无效行",
    "c.inconclusive": "无法确定", "c.api_error": "接口错误",
  },
  en: {
    title: "Order lookup · lookup", skip: "Skip to the lookup form",
    "token.h": "Access token", "token.label": "Token (ask your administrator; kept in this tab only)",
    "token.save": "Save token", "token.forget": "Change token",
    "token.none": "Enter your access token first.", "token.checking": "Checking the token…",
    "token.ok": "Token accepted and kept in this tab.",
    "token.off": "This service runs without tokens (this machine only).",
    "token.missing": "The service needs a token: enter your access token above.",
    "token.wrong": "Wrong token: the service does not accept it. Check it and enter it again (or ask your administrator).",
    "lookup.h": "Look up one number", "lookup.submit": "Look up", "lookup.running": "Looking up…",
    "f.mask": "Masked number (required)", "f.mask.help": "e.g. 138****1234 or 138xxxx1234; hidden digits as * x ?",
    "f.mask.empty": "Enter a masked number, e.g. 138****1234",
    "f.city": "City", "f.province": "Province", "f.area_code": "Area code", "f.zip": "Zip code",
    "f.carrier": "Carrier", "f.carrier.any": "Any", "f.carrier.cm": "China Mobile",
    "f.carrier.cu": "China Unicom", "f.carrier.ct": "China Telecom", "f.carrier.cb": "China Broadnet",
    "f.mode": "Mode", "f.mode.first": "Stop at the first match", "f.mode.all": "Every match of the tier",
    "progress.h": "Progress", "progress.tier": "Tier", "progress.candidates": "Candidates",
    "progress.answered": "Answered", "progress.state": "State",
    "tier.city": "City", "tier.province": "Rest of the province", "tier.national": "Rest of the country",
    "tier.unlocated": "Unlocated segments",
    "ts.pending": "waiting", "ts.running": "running", "ts.done": "done", "ts.empty": "no candidates",
    "ts.negative": "no orders", "ts.hit": "hit", "ts.inconclusive": "inconclusive",
    "ts.aborted": "aborted", "ts.skipped": "not run",
    "api.ok": "ok", "api.throttled": "throttled by the API, slowed down", "api.paused": "paused, waiting for the API",
    "api.down": "API down, waiting for it", "api.probing": "probing whether the API is back",
    "live": "{answered} numbers checked, {rate}/s, API: {state}",
    "result.h": "Result", "result.phone": "Number", "result.reveal": "Reveal the full number",
    "result.tier": "Tier", "result.region": "Region", "result.carrier": "Carrier",
    "result.numbers": "Numbers checked", "result.requests": "Requests", "result.time": "Time", "result.seconds": "{s} s",
    "result.unlocated": "unlocated segment (region unknown)",
    "result.orders": "Orders", "orders.n": "{n} orders", "orders.one": "1 order", "orders.some": "has orders",
    "result.copy": "Copy number", "copy.ok": "Copied", "copy.fail": "Could not copy: the number is selected, press Ctrl+C",
    "history.h": "This session's lookups", "history.help": "Masked numbers only, kept in this tab; closing the tab clears them.",
    "history.clear": "Clear the list",
    "st.matched": "Found", "st.not_found": "Not found", "st.inconclusive": "Inconclusive",
    "st.api_error": "API error",
    "adv.inconclusive": "Some candidates could not be checked because the order API failed, so this is not a \"not found\". Run the same lookup again later; if it keeps happening, tell the owner of the order API.",
    "adv.api_error": "The order API refused the checks or is unavailable: there is no answer. Try again later; if it persists, give your administrator the time and the mask so they can check the API credentials and the service log.",
    "adv.not_found": "No candidate has orders: check the mask and the region hints.",
    "err.network": "Cannot reach the service: {msg}", "err.server": "Service error ({status}): {msg}",
    "batch.h": "Batch lookups", "batch.file": "File: CSV (with a mask column, UTF-8 or GB18030) or JSONL",
    "batch.submit": "Upload and start", "batch.nofile": "Choose a CSV or JSONL file.",
    "job.queued": "queued", "job.running": "running", "job.done": "done", "job.cancelled": "cancelled",
    "job.failed": "failed", "job.progress": "Progress", "job.rows": "{done} / {total} rows ({pct}%)",
    "job.eta": "about {eta} left", "job.cancel": "Cancel job",
    "job.created": "submitted {t}", "job.started": "started {t}", "job.finished": "ended {t}",
    "job.csv": "Download results CSV", "job.jsonl": "Download results JSONL",
    "job.reconnecting": "Reconnecting to the service…",
    "c.matched": "found", "c.not_found": "not found", "c.invalid": "invalid rows",
    "c.inconclusive": "inconclusive", "c.api_error": "API errors",
  },
};
const ICONS = { matched: "✔", not_found: "○", inconclusive: "?", api_error: "✖" };
const FIELDS = ["mask", "city", "province", "area_code", "zip", "carrier", "mode"];
const TOKEN_KEY = "lookup.token";
const LANG_KEY = "lookup.lang";
const HISTORY_KEY = "lookup.history";
const HISTORY_KEPT = 50;
const ENDED = new Set(["done", "cancelled", "failed"]);

let lang = localStorage.getItem(LANG_KEY) || (document.documentElement.lang === "en" ? "en" : "zh");
let lastProgress = null;
let lastResult = null;
const jobs = new Map();

const $ = (id) => document.getElementById(id);
function t(key, vars) {
  let text = (T[lang] && T[lang][key]) || T.zh[key] || key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
const fmtInt = (n) => Number(n).toLocaleString(lang === "zh" ? "zh-CN" : "en");

// -- language -------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  const toggle = $("lang-toggle");
  toggle.textContent = lang === "zh" ? "English" : "中文";
  toggle.lang = lang === "zh" ? "en" : "zh-CN";
  if (lastProgress) renderProgress(lastProgress);
  if (lastResult) renderResult(lastResult, false);
  for (const job of jobs.values()) renderJob(job);
  renderHistory();
  refreshTokenStatus();
}

// -- token ----------------------------------------------------------------------------------

let tokenState = "none";
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function refreshTokenStatus() {
  const status = $("token-status");
  status.textContent = t(`token.${tokenState}`);
  const good = tokenState === "ok" || tokenState === "off";
  // "missing" before anything was typed is a prompt, not an error: only "wrong" is marked bad
  const neutral = tokenState === "checking" || tokenState === "missing" || tokenState === "none";
  status.className = `note ${good ? "good" : neutral ? "" : "bad"}`;
  $("token-forget").hidden = !token();
  // Signed in: the section shrinks to one line (state and "change token"), so the
  // result stays in view on a small screen.
  $("token-form").hidden = good;
  $("token-section").classList.toggle("compact", good);
}

function setTokenState(state) {
  tokenState = state;
  refreshTokenStatus();
  if (state === "wrong" || state === "missing") {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state === "wrong") $("token").setAttribute("aria-invalid", "true");
    else $("token").removeAttribute("aria-invalid");
    $("token").focus();
  } else {
    $("token").removeAttribute("aria-invalid");
    const active = document.activeElement;
    if ((state === "ok" || state === "off") && (!active || active === document.body || $("token-form").contains(active))) {
      $("mask").focus();  // the token field is gone: on to the form
    }
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  // The service's messages (problems, reasons) in the page's language, as toggled.
  headers.set("Accept-Language", lang === "zh" ? "zh-CN, zh;q=0.9" : "en");
  const resp = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (resp.status === 401) {
    // The service answers 401 to no token, and to one it does not know (error="invalid_token").
    const challenge = resp.headers.get("WWW-Authenticate") || "";
    setTokenState(challenge.includes("invalid_token") ? "wrong" : "missing");
  }
  return resp;
}

async function errorText(resp) {
  const body = await resp.json().catch(() => ({}));
  // problem+json: detail says what was wrong, errors[0].field which form field it was
  const field = Array.isArray(body.errors) && body.errors.length ? body.errors[0].field : undefined;
  return { message: body.detail || resp.statusText, field, body };
}

async function checkToken() {
  const given = Boolean(token());
  if (given) setTokenState("checking");
  try {
    const resp = await api("/v1/jobs");
    if (!resp.ok) {
      if (resp.status !== 401) {  // 401 is said by setTokenState; anything else in words
        const err = await errorText(resp);
        const status = $("token-status");
        status.textContent = t("err.server", { status: resp.status, msg: err.message });
        status.className = "note bad";
      }
      return false;
    }
    setTokenState(given ? "ok" : "off");
    const data = await resp.json();
    for (const job of data.jobs.reverse()) upsertJob(job);
    return true;
  } catch (err) {
    $("token-status").textContent = t("err.network", { msg: err.message });
    return false;
  }
}

// -- one lookup -----------------------------------------------------------------------------

function clearErrors() {
  for (const f of FIELDS) {
    const node = $(f);
    node.removeAttribute("aria-invalid");
    $(`${f}-error`).textContent = "";
  }
  $("lookup-error").textContent = "";
}

function showFieldError(field, message) {
  const target = FIELDS.includes(field) ? field : null;
  if (target) {
    $(`${target}-error`).textContent = message;
    $(target).setAttribute("aria-invalid", "true");
    $(target).focus();
  } else {
    $("lookup-error").textContent = message;
  }
}

function tierStateText(state) { return t(`ts.${state}`); }

function renderProgress(p) {
  lastProgress = p;
  const rows = $("tier-rows");
  rows.replaceChildren();
  for (const tier of p.tiers) {
    const tr = el("tr", { class: tier.state === "running" ? "running" : "", "data-tier": tier.name },
      el("th", { scope: "row" }, t(`tier.${tier.name}`)),
      el("td", { class: "num" }, fmtInt(tier.candidates)),
      el("td", { class: "num" }, fmtInt(tier.answered)),
      el("td", { class: "tier-state" }, tierStateText(tier.state)));
    rows.append(tr);
  }
  if (p.state !== undefined) {
    const known = T.zh[`api.${p.state}`] ? t(`api.${p.state}`) : p.text;
    // The engine's own words are English: the Chinese page shows its state in its words only.
    const detail = lang === "en" && p.text && p.text !== "ok" && p.text !== p.state
      ? ` (${p.text})` : "";
    $("lookup-state").textContent = t("live", {
      answered: fmtInt(p.answered), rate: p.rate === null ? "–" : fmtInt(Math.round(p.rate)),
      state: known + detail,
    });
  }
}

function renderResult(r, fresh) {
  lastResult = r;
  $("lookup-result").hidden = false;
  const status = $("result-status");
  status.className = `status st-${r.status}`;
  status.dataset.status = r.status;
  status.querySelector(".icon").textContent = ICONS[r.status] || "";
  status.querySelector(".label").textContent = t(`st.${r.status}`);
  const shown = r.revealed || r.phone || "–";
  $("result-phone").textContent = shown;
  $("reveal").hidden = !r.reveal || Boolean(r.revealed);
  $("result-tier").textContent = r.tier ? t(`tier.${r.tier}`) : "–";
  const region = r.region;
  const place = region && (region.province || region.city)
    ? [region.province, region.city].filter(Boolean).join(" ")
    : (r.tier === "unlocated" ? t("result.unlocated") : "–");
  $("result-region").textContent = place;
  $("result-carrier").textContent = (region && region.carrier) || "–";
  $("result-orders").textContent = ordersText(r);
  $("copy").hidden = !r.revealed;
  if (fresh) $("copy-status").textContent = "";
  $("result-numbers").textContent = fmtInt(r.numbers_checked);
  $("result-requests").textContent = fmtInt(r.requests);
  $("result-time").textContent = t("result.seconds", { s: (r.elapsed_ms / 1000).toFixed(2) });
  $("result-reason").textContent = r.reason || "";
  const advice = $("result-advice");
  const key = `adv.${r.status}`;
  advice.hidden = !T.zh[key];
  advice.textContent = T.zh[key] ? t(key) : "";
  if (lastProgress && r.tiers) {
    const byName = Object.fromEntries(r.tiers.map((x) => [x.name, x]));
    renderProgress({ ...lastProgress, tiers: lastProgress.tiers.map((x) => ({
      ...x, answered: byName[x.name] ? byName[x.name].checked : x.answered,
      state: byName[x.name] ? byName[x.name].status : x.state })) });
  }
  if (fresh) {
    // The result sits between the form and the tier table: its heading takes the focus
    // and as much of it as fits comes into view.
    $("result-h").focus({ preventScroll: true });
    $("lookup-result").scrollIntoView({ block: "nearest" });
  }
}

function parseEvents(buffer, onEvent) {
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const chunk = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    let name = "message";
    const data = [];
    for (const line of chunk.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }
  return buffer;
}

async function runLookup(event) {
  event.preventDefault();
  clearErrors();
  const body = {};
  for (const f of FIELDS) {
    const value = $(f).value.trim();
    if (value) body[f] = value;
  }
  if (!body.mask) { showFieldError("mask", t("f.mask.empty")); return; }
  if (!token() && tokenState !== "off") { setTokenState("none"); $("token").focus(); return; }
  const button = $("lookup-submit");
  button.disabled = true;
  button.textContent = t("lookup.running");
  $("lookup-result").hidden = true;
  lastResult = null;
  lastProgress = null;
  try {
    const resp = await api("/v1/lookups/stream", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      if (resp.status === 401) return;
      const err = await errorText(resp);
      if (resp.status === 422) showFieldError(err.field, err.message);
      else $("lookup-error").textContent = t("err.server", { status: resp.status, msg: err.message });
      return;
    }
    if (token() && tokenState !== "ok") setTokenState("ok");
    $("lookup-progress").hidden = false;
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (name, data) => {
        if (name === "plan") renderProgress({ tiers: data.tiers });
        else if (name === "progress") renderProgress(data);
        else if (name === "result") { renderResult(data, true); remember(data); }
      });
    }
  } catch (err) {
    $("lookup-error").textContent = t("err.network", { msg: err.message });
  } finally {
    button.disabled = false;
    button.textContent = t("lookup.submit");
  }
}

async function reveal() {
  if (!lastResult || !lastResult.reveal) return;
  const resp = await api("/v1/reveal", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: lastResult.reveal }),
  });
  if (!resp.ok) {
    const err = await errorText(resp);
    $("result-reason").textContent = err.message;
    return;
  }
  const data = await resp.json();
  lastResult.revealed = data.hits.join(", ");
  lastResult.revealedHits = data.hits;
  renderResult(lastResult, false);
  $("result-phone").focus();  // tabindex=-1: the button is gone, focus stays on the number
}

function ordersText(r) {
  const hit = r.hits && r.hits.length ? r.hits[0] : null;
  if (!hit) return "–";
  if (hit.order_count === null || hit.order_count === undefined) return t("orders.some");
  return hit.order_count === 1 ? t("orders.one") : t("orders.n", { n: fmtInt(hit.order_count) });
}

async function copyNumber() {
  const text = lastResult && lastResult.revealedHits ? lastResult.revealedHits.join("\n") : "";
  if (!text) return;
  let ok = false;
  try {
    // Only a secure context has the async clipboard (https, or a loopback address).
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch (err) {
    ok = false;
  }
  if (!ok) ok = copyByCommand(text);
  $("copy-status").textContent = t(ok ? "copy.ok" : "copy.fail");
  if (!ok) {  // the operator copies it by hand
    const range = document.createRange();
    range.selectNodeContents($("result-phone"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
}

function copyByCommand(text) {
  const area = el("textarea", { readonly: "", "aria-hidden": "true", tabindex: "-1", class: "offscreen" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
  area.remove();
  $("copy").focus();
  return ok;
}

// -- this session's lookups (masked numbers only, this tab only) -----------------------------

function history() {
  try {
    const items = JSON.parse(sessionStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(items) ? items : [];
  } catch (err) {
    return [];
  }
}

function remember(r) {
  // The streamed result has every number masked; the revealed number is never kept.
  const hit = r.hits && r.hits.length ? r.hits[0] : null;
  const item = { at: new Date().toISOString(), mask: r.mask, phone: r.phone || null, hint: r.hint || null,
    status: r.status, tier: r.tier || null, orders: hit ? hit.order_count ?? -1 : null };
  const items = [item, ...history()].slice(0, HISTORY_KEPT);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(items));
  renderHistory();
}

function renderHistory() {
  const items = history();
  $("history").hidden = items.length === 0;
  const list = $("history-list");
  list.replaceChildren(...items.map((it) => {
    const parts = [t(`st.${it.status}`)];
    if (it.tier) parts.push(t(`tier.${it.tier}`));
    if (it.orders !== null && it.orders !== undefined) {
      parts.push(ordersText({ hits: [{ order_count: it.orders < 0 ? null : it.orders }] }));
    }
    return el("li", { class: `h-${it.status}` },
      el("time", { datetime: it.at }, fmtTime(it.at)), " ",
      el("span", { class: "h-mask" }, it.phone || it.mask), it.hint ? ` (${it.hint})` : "",
      ` — ${parts.join(" · ")}`);
  }));
}

function clearHistory() {
  sessionStorage.removeItem(HISTORY_KEY);
  renderHistory();
  $("mask").focus();
}

function fmtTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const today = new Date().toDateString() === when.toDateString();
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (!today) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  return when.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", opts);
}

// -- batch jobs -----------------------------------------------------------------------------

function duration(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

function renderJob(job) {
  let item = document.querySelector(`li[data-job="${job.id}"]`);
  if (!item) {
    item = el("li", { class: "job", "data-job": job.id });
    $("jobs").prepend(item);
  }
  const pct = job.total ? Math.floor((job.done * 100) / job.total) : 100;
  const barId = `bar-${job.id}`;
  const counts = Object.entries(job.counts).filter(([, n]) => n > 0)
    .map(([s, n]) => `${t(`c.${s}`)} ${fmtInt(n)}`).join(" · ");
  const state = el("p", { class: `job-state s-${job.state}`, "data-state": job.state },
    job.offline ? t("job.reconnecting") : t(`job.${job.state}`));
  const bar = el("progress", { id: barId, max: String(job.total || 1), value: String(job.done) });
  const children = [
    el("h3", {}, job.filename), state,
    el("label", { for: barId }, t("job.progress")), bar,
    el("p", { class: "job-rows" }, t("job.rows", { done: fmtInt(job.done), total: fmtInt(job.total), pct })),
    el("p", { class: "job-counts" }, counts),
  ];
  const times = ["created", "started", "finished"].filter((k) => job[k])
    .map((k) => el("time", { datetime: job[k], class: `job-${k}` }, t(`job.${k}`, { t: fmtTime(job[k]) })));
  if (times.length) {
    const line = el("p", { class: "job-times" });
    times.forEach((node, i) => line.append(...(i ? [" · ", node] : [node])));
    children.splice(1, 0, line);
  }
  if (job.state === "running" && job.eta_s !== null) {
    children.push(el("p", { class: "job-eta" }, t("job.eta", { eta: duration(job.eta_s) })));
  }
  if (job.error) children.push(el("p", { class: "field-error" }, job.error));
  const actions = el("div", { class: "actions" });
  if (!ENDED.has(job.state)) {
    const cancel = el("button", { type: "button", class: "secondary job-cancel" }, t("job.cancel"));
    cancel.addEventListener("click", () => cancelJob(job.id));
    actions.append(cancel);
  } else {
    for (const fmt of ["csv", "jsonl"]) {
      const dl = el("button", { type: "button", class: `secondary job-download-${fmt}` }, t(`job.${fmt}`));
      dl.addEventListener("click", () => download(job, fmt));
      actions.append(dl);
    }
  }
  children.push(actions);
  const focused = document.activeElement && item.contains(document.activeElement)
    ? document.activeElement.className : null;
  item.replaceChildren(...children);
  if (focused) {
    const again = item.querySelector(`button.${focused.split(" ").pop()}`) || item.querySelector("button");
    if (again) again.focus();
  }
}

function upsertJob(job) {
  const known = jobs.get(job.id);
  jobs.set(job.id, job);
  renderJob(job);
  if (!ENDED.has(job.state) && !(known && known.polling)) poll(job.id);
}

async function poll(id) {
  const job = jobs.get(id);
  job.polling = true;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 400));
    let fresh;
    try {
      const resp = await api(`/v1/jobs/${id}`);
      if (resp.status === 401 || resp.status === 403) return;
      if (!resp.ok) throw new Error(resp.statusText);
      fresh = await resp.json();
    } catch (err) {
      const cur = jobs.get(id);
      cur.offline = true;  // the service restarts: keep polling, it resumes the job
      renderJob(cur);
      continue;
    }
    fresh.polling = true;
    jobs.set(id, fresh);
    renderJob(fresh);
    if (ENDED.has(fresh.state)) return;
  }
}

async function cancelJob(id) {
  const resp = await api(`/v1/jobs/${id}`, { method: "DELETE" });
  if (resp.ok) {
    const job = await resp.json();
    job.polling = true;
    jobs.set(id, job);
    renderJob(job);
  }
}

async function download(job, fmt) {
  const resp = await api(`/v1/jobs/${job.id}/results?format=${fmt}`);
  if (!resp.ok) return;
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const stem = job.filename.replace(/\.[^.]*$/, "") || "job";
  const a = el("a", { href: url, download: `${stem}-results.${fmt}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function uploadJob(event) {
  event.preventDefault();
  const input = $("batch-file");
  const error = $("batch-file-error");
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  const file = input.files && input.files[0];
  if (!file) { error.textContent = t("batch.nofile"); input.focus(); return; }
  if (!token() && tokenState !== "off") { setTokenState("none"); $("token").focus(); return; }
  const form = new FormData();
  form.append("mode", $("batch-mode").value);
  form.append("file", file, file.name);
  try {
    const resp = await api("/v1/jobs", { method: "POST", body: form });
    if (!resp.ok) {
      if (resp.status === 401) return;
      const err = await errorText(resp);
      error.textContent = err.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    upsertJob(await resp.json());
    input.value = "";
  } catch (err) {
    error.textContent = t("err.network", { msg: err.message });
  }
}

// -- start ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("lang-toggle").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) { setTokenState("none"); return; }
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    checkToken();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    setTokenState("none");
    $("token").focus();
  });
  $("lookup-form").addEventListener("submit", runLookup);
  $("reveal").addEventListener("click", reveal);
  $("copy").addEventListener("click", copyNumber);
  $("history-clear").addEventListener("click", clearHistory);
  $("batch-form").addEventListener("submit", uploadJob);
  applyLanguage();
  checkToken();
  document.body.dataset.ready = "true";
});
