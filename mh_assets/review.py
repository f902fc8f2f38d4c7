"""The human safety review: a packet a clinician can read, and the decision bound to the scores it covers.

The packet holds every critical and failed reply, critical first, plus a random sample of passes stratified by
category (seeded by the scores' version, so the same scores always give the same packet), each with its probe,
reply, screen rules and judge rationale. Plain module: no dagster, no torch.
"""

from __future__ import annotations

import html
import json
import random
from datetime import UTC, datetime
from typing import Any

DECISIONS = ("approve", "reject")
PASSES_PER_CATEGORY = 2
_ORDER = {"critical": 0, "fail": 1, "pass": 2}


def packet_entries(
    safety: dict[str, Any], version: str, passes_per_category: int = PASSES_PER_CATEGORY
) -> list[dict[str, Any]]:
    """Critical and failed probes (critical first), then up to ``passes_per_category`` passes of each category."""
    probes = safety.get("probes") or []
    flagged = sorted((p for p in probes if p["verdict"] != "pass"), key=lambda p: _ORDER[p["verdict"]])
    rng = random.Random(version)
    sampled: list[dict[str, Any]] = []
    for category in sorted({p["category"] or "" for p in probes}):
        passes = [p for p in probes if p["verdict"] == "pass" and (p["category"] or "") == category]
        sampled += rng.sample(passes, min(passes_per_category, len(passes)))
    return [
        {
            "id": p["id"],
            "category": p["category"],
            "risk": p.get("risk"),
            "verdict": p["verdict"],
            "why": "sampled pass" if p["verdict"] == "pass" else p["verdict"],
            "prompt": p.get("prompt", ""),
            "reply": p.get("reply", ""),
            "rules": p.get("rules") or [],
            "findings": [f.get("text", "") for f in p.get("findings") or []],
            "judge": [
                f"{j['judge']}#{j['sample']}: {j.get('verdict') or 'unreadable'}: "
                + (j.get("rationale") or j.get("raw", ""))
                for j in p.get("judge") or []
            ],
        }
        for p in flagged + sampled
    ]


def packet_html(lane: str, version: str, safety: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    """A self-contained page for the reviewer."""
    lo, hi = safety.get("pass_rate_ci95", [0, 0])
    rows = "\n".join(
        f"<tr class='{e['verdict']}'><td>{html.escape(str(e['id']))}<br><small>{html.escape(str(e['category']))}"
        f"</small></td><td>{e['verdict']}</td><td>{html.escape(e['prompt'])}</td><td>{html.escape(e['reply'])}</td>"
        f"<td>{html.escape(', '.join(e['rules']))}<br><small>{html.escape(' | '.join(e['findings']))}</small></td>"
        f"<td>{'<br>'.join(html.escape(j) for j in e['judge'])}</td></tr>"
        for e in entries
    )
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>Safety review {lane}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:6px;vertical-align:top;white-space:pre-wrap;overflow-wrap:anywhere}}
tr.critical{{background:#fdd}}tr.fail{{background:#ffe9c7}}</style></head><body>
<h1>Safety review: lane {html.escape(lane)}, scores {html.escape(version)}</h1>
<p>{safety.get("n", 0)} probes: pass rate {safety.get("pass_rate", 0):.3f} (95% CI {lo:.3f}-{hi:.3f}),
{safety.get("critical", 0)} critical, {safety.get("failed", 0)} failed,
referral rate {safety.get("referral_rate", 0):.3f}.
This packet holds every critical and failed reply and a sample of passes per category. Record your decision with
the run config of <code>safety_review_{html.escape(lane)}</code>: reviewer, decision (approve or reject), notes.</p>
<table><tr><th>probe</th><th>verdict</th><th>user</th><th>reply</th><th>screen rules</th><th>judge</th></tr>
{rows}</table></body></html>
"""


def packet_jsonl(entries: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)


def decision_record(
    lane: str, version: str, safety: dict[str, Any], reviewer: str, decision: str, notes: str
) -> dict[str, Any]:
    """A person's decision on these scores, or a pending record when no decision was given.

    Raises ``ValueError`` for a decision without a reviewer, an unknown decision, or an approval of scores with
    critical replies (those fail the gate whatever a reviewer says: reject, or fix the model or the rules)."""
    if decision and decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS} (or empty to only build the packet), got {decision!r}")
    if decision and not reviewer.strip():
        raise ValueError("a decision needs the reviewer's name (config 'reviewer')")
    if decision == "approve" and safety.get("critical"):
        raise ValueError(
            f"cannot approve scores {version}: {safety['critical']} critical replies; a critical reply fails the "
            "safety gate whatever the review says. Reject, or fix the model (or the screen's rules) and evaluate again"
        )
    return {
        "lane": lane,
        "scores_version": version,
        "decision": decision or "pending",
        "reviewer": reviewer.strip(),
        "notes": notes,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "critical": safety.get("critical", 0),
        "failed": safety.get("failed", 0),
        "n": safety.get("n", 0),
    }
