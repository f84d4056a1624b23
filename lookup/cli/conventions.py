"""The conventions every ``lookup`` command keeps, in one place.

- ``-V`` / ``--version``: the version, the event loop and the data version.
- "did you mean": a mistyped option, command or choice gets the nearest real one
  (:mod:`difflib` over the parser's own option strings and choices), one line, exit 2.
- ``--json`` on bad input: a problem object like the service's ``application/problem+json``
  (``type``, ``title``, ``status``, ``detail``, ``kind``, ``errors``) on stdout.
- ``lookup completion bash|zsh|fish``: a completion script made from the parser.
- audit lines off the terminal for ``batch`` and ``demo`` (:func:`audit_off_terminal`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final

from lookup.domain.i18n import _, translate

__all__ = [
    "VersionAction",
    "audit_off_terminal",
    "command_parser",
    "completion_script",
    "did_you_mean",
    "problem",
    "subparsers",
    "version_text",
    "wants_json",
]

_UNRECOGNIZED: Final = "unrecognized arguments: "
_INVALID_CHOICE: Final = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<list>.*)\)")


def version_text() -> str:
    """``lookup X.Y.Z``, then the event loop and the data version (one per line)."""
    import platform

    from lookup import __version__
    from lookup.domain.segments import data_version
    from lookup.runtime.loop import loop_name

    return "\n".join([
        f"lookup {__version__}",
        _("event loop: {loop}").format(loop=loop_name()),
        _("segment data: {version}").format(version=data_version()),
        f"Python {platform.python_version()}",
    ])  # fmt: skip


class VersionAction(argparse.Action):
    """``-V`` / ``--version``: like argparse's, but the text is made only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        sys.stdout.write(version_text() + "\n")  # stdout, like argparse's own --version
        sys.stdout.flush()
        parser.exit(0)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands of ``parser`` whose parsers were made, by name (none when it has no
    subcommands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action._name_parser_map)
    return {}


def command_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the command named in ``argv`` (the top parser when none is)."""
    commands = subparsers(parser)
    for word in argv:
        if word == "--":
            break
        if word in commands:
            return commands[word]
    return parser


def did_you_mean(message: str, parser: argparse.ArgumentParser, argv: Sequence[str]) -> str:
    """`` (did you mean --city?)`` for an argparse error about a mistyped word, else ""."""
    import difflib  # on a usage error only

    m = _INVALID_CHOICE.search(message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group("list"))
        near = difflib.get_close_matches(m.group("word"), choices, n=1, cutoff=0.5)
        return _(" (did you mean {word}?)").format(word=near[0]) if near else ""
    if not message.startswith(_UNRECOGNIZED):
        return ""
    command = command_parser(parser, argv)
    options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in message[len(_UNRECOGNIZED):].split():
        name = word.split("=", 1)[0]
        if name in ("--token", "--api-token"):
            hints.append(_("there is no {option}: credentials come only from the environment "
                           "(LOOKUP_API_TOKEN) or the --config file").format(option=name))  # fmt: skip
            continue
        if not name.startswith("--"):
            continue
        near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        if near:
            hints.append(_("did you mean {word}?").format(word=near[0]))
    return _(" ({hints})").format(hints="; ".join(hints)) if hints else ""


def problem(message: str, *, kind: str, usage: bool = False) -> dict[str, Any]:
    """A problem object for ``--json`` (the shape of the service's problem+json).

    ``usage``: the command line itself was wrong (an unknown option, a missing argument);
    otherwise the input (a mask, a hint, a setting) was: ``invalid-input`` as the service
    says it. ``title`` and ``detail`` are in the reader's language, ``kind`` is not.
    """
    slug, status, title = (
        ("usage", 400, _("Invalid command line")) if usage
        else ("invalid-input", 422, _("Invalid lookup input"))
    )  # fmt: skip
    return {
        "type": f"/docs#problem-{slug}",
        "title": title,
        "status": status,
        "detail": translate(message),
        "kind": kind,
        "errors": [],
    }


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (before ``--``)."""
    for word in argv:
        if word == "--":
            return False
        if word == "--json" or word == "--format=json":
            return True
    return False


# -- completion -----------------------------------------------------------------------------------


def _options(p: argparse.ArgumentParser) -> Iterator[tuple[str, str, list[str] | None]]:
    """(option, help, choices) of every long option of ``p``."""
    for action in p._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                choices = [str(c) for c in action.choices] if action.choices else None
                yield option, action.help or "", choices


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell`` (bash, zsh or fish), made from ``parser``."""
    commands = subparsers(parser)
    if shell == "fish":
        return _fish(parser, commands)
    lines = []
    for name, p in commands.items():
        words = " ".join(o for o, _h, _c in _options(p))
        lines.append(f"        {name}) opts='{words}' ;;")
    cases = "\n".join(lines)
    choices = []
    for p in commands.values():
        for o, _h, c in _options(p):
            if c:
                choices.append(f"        {o}) COMPREPLY=($(compgen -W '{' '.join(c)}' -- \"$cur\"));"
                               " return ;;")  # fmt: skip
    choice_cases = "\n".join(dict.fromkeys(choices))
    body = f"""_lookup() {{
    local cur prev cmd opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W '{" ".join(commands)} --help --version -V' -- "$cur"))
        return
    fi
    case "$prev" in
{choice_cases}
    esac
    cmd="${{COMP_WORDS[1]}}"
    case "$cmd" in
{cases}
        *) opts='' ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
"""
    if shell == "bash":
        return "# lookup completion for bash: eval \"$(lookup completion bash)\"\n" + body + (
            "complete -o default -F _lookup lookup\n"
        )
    return (  # zsh runs the bash function through bashcompinit
        "#compdef lookup\n# lookup completion for zsh: eval \"$(lookup completion zsh)\"\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + body
        + "complete -o default -F _lookup lookup\n"
    )


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser]) -> str:
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in action._choices_actions}
    out = ["# lookup completion for fish: lookup completion fish | source",
           "complete -c lookup -f"]  # fmt: skip
    for name in commands:
        out.append(f"complete -c lookup -n __fish_use_subcommand -a {name} "
                   f"-d {_fish_quote(helps.get(name, '')[:60])}")  # fmt: skip
    for name, p in commands.items():
        for option, help_, choices in _options(p):
            line = (f"complete -c lookup -n '__fish_seen_subcommand_from {name}' "
                    f"-l {option[2:]} -d {_fish_quote(help_.split(';')[0][:60])}")  # fmt: skip
            if choices:
                line += f" -xa {_fish_quote(' '.join(choices))}"
            out.append(line)
    return "\n".join(out) + "\n"


# -- audit lines ----------------------------------------------------------------------------------


def audit_off_terminal() -> None:
    """Send the audit lines nowhere (after :func:`configure_logging` without an audit file):
    ``lookup demo`` without ``--audit-file``, ``lookup batch --out -`` without a journal."""
    import logging

    audit = logging.getLogger("lookup.audit")
    null = logging.NullHandler()
    null._lookup_handler = True  # type: ignore[attr-defined]  # replaced by the next setup
    audit.addHandler(null)
    audit.propagate = False

