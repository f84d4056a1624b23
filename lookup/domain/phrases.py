"""English texts made elsewhere that a person reads, as catalog templates.

These are the machine (English) forms of result reasons, input errors, argparse's usage
errors and the service's problem titles. They stay English where they are made (logs,
JSON fields, journals); :func:`lookup.domain.i18n.translate` renders them in the reader's
language at the boundary (the CLI's terminal, a problem's ``title``/``detail``) by
matching them against these templates. ``tests/domain/test_i18n.py`` makes real ones and
checks that each is translated, so a reworded message cannot silently fall back to English.
"""

from __future__ import annotations

from typing import Final

from lookup.domain.i18n import N_

__all__ = ["PHRASES"]

PHRASES: Final = (
    # result reasons (engine/matcher.py)
    N_("{tier} tier: {error}"),
    N_("{n} candidates of earlier tiers ({parts}) were never answered (the API kept "
       "failing): one of them may have orders too"),
    N_("{n} candidates of the {tier} tier were never answered"),
    N_("{n} candidates ({parts}) could not be checked before the deadline (the API kept "
       "failing): the answer is unknown, not 'no'"),
    # input errors (domain/masks.py, domain/tiers.py, domain/segments.py)
    N_("'{mask}' does not start with 1: not a Chinese mobile number (landlines and foreign "
       "numbers cannot be resolved)"),
    N_("'{mask}' has {n} digits and wildcards; a Chinese mobile number has 11"),
    N_("'{mask}' has an unexpected '{char}' at position {i}: use digits, * x X ? or ＊ for "
       "hidden digits, spaces or dashes between groups"),
    N_("'{mask}' hides the first digit: Chinese mobile numbers start with 1, write 1 in its "
       "place"),
    N_("'{mask}' starts with {start}: no Chinese mobile number does (mobile numbers start "
       "with 13-19)"),
    N_("'{mask}' shows only the last 4 digits: about 544,000 numbers fit, too many to "
       "enumerate; the first 3 digits are needed (138****1234)"),
    N_("'{mask}' has '{char}' at position {i}: write digits as 0-9 (ASCII or full-width "
       "０-９)"),
    N_("empty mask: expected something like 138****1234"),
    N_("unknown city '{name}': the database knows prefecture-level cities{hint}"),
    N_("unknown province '{name}'{hint}"),
    N_("'{name}' is a province, not a city: pass it as the province hint (--province) "
       "instead"),
    N_("{mask} fits {total} numbers ({parts}); the cap is {cap}: reveal more digits, or "
       "raise max_candidates (--max-candidates) if the API owner agrees"),
    N_("no order API configured: pass --api URL (a template with {phone}), --api demo or "
       "--api-plugin package.module:attr; or set LOOKUP_API_URL"),
    N_("--also goes with one MASK, not with '-' (masks from stdin)"),
    # argparse's usage errors
    N_("unrecognized arguments: {args}"),
    N_("the following arguments are required: {args}"),
    N_("argument {arg}: invalid choice: {choice} (choose from {choices})"),
    N_("argument {arg}: expected one argument"),
    N_("argument {arg}: invalid int value: {value}"),
    # the service's problem titles (service/problems.py)
    N_("Malformed request"),
    N_("Authentication required"),
    N_("Forbidden"),
    N_("Not found"),
    N_("Method not allowed"),
    N_("Conflict"),
    N_("Request timeout"),
    N_("Request too large"),
    N_("Unsupported media type"),
    N_("Invalid request body"),
    N_("Invalid lookup input"),
    N_("Too many lookups queued"),
    N_("Internal error"),
    N_("Service unavailable"),
)
