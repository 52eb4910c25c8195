#!/usr/bin/env python3
"""What a Gatehouse deployment costs (docs/cost.md).

Reads docs/bench/functions.json (make bench-functions), docs/bench/prices.json,
docs/bench/usage-profile.json and infra/template.yaml, and prints markdown tables:
the generated block of docs/cost.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import yaml

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS, PRICES = Path("docs/bench/functions.json"), Path("docs/bench/prices.json")
PROFILE, TEMPLATE, DOC = Path("docs/bench/usage-profile.json"), Path("infra/template.yaml"), Path("docs/cost.md")
BEGIN, END = "<!-- cost:begin -->", "<!-- cost:end -->"
MAIN_TABLE, AUDIT_TABLE, SECRET = "MainTable", "AuditTable", "AWS::SecretsManager::Secret"
DAYS_PER_MONTH, GB = 365.25 / 12, 2**30
FULL_VCPU_MB = 1769  # Lambda: a function of 1,769 MB has one vCPU; below, CPU in proportion
ITEMS = ["Lambda requests", "Lambda compute", "API Gateway", "DynamoDB reads", "DynamoDB writes"]
Json = dict[str, Any]


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation's short tags (!Ref, !Sub, !GetAtt ...) as plain data."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Json:
    kinds = {yaml.ScalarNode: loader.construct_scalar, yaml.SequenceNode: loader.construct_sequence}
    value = kinds.get(type(node), loader.construct_mapping)(node)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _short_tag)


def fail(message: str) -> NoReturn:
    sys.exit(f"cost.py: {message}")


def param(tpl: Json, value: Any) -> Any:
    """A value, or the default of the template parameter it refers to."""
    return tpl["Parameters"][value["Ref"]]["Default"] if isinstance(value, dict) and "Ref" in value else value


def props(tpl: Json, name: str) -> Json:
    if name not in tpl["Resources"]:
        fail(f"{name} is not a resource of {TEMPLATE}")
    return tpl["Resources"][name].get("Properties", {})


def setting(tpl: Json, function: str, key: str) -> Any:
    """A function's MemorySize or Architectures: its own, or the Globals'."""
    return param(tpl, props(tpl, function).get(key, tpl["Globals"]["Function"].get(key)))


def of_type(tpl: Json, kind: str) -> list[str]:
    return [name for name, r in tpl["Resources"].items() if r["Type"] == kind]


def secrets_read(tpl: Json, function: str) -> int:
    """How many of the template's secrets the function's role may GetSecretValue."""
    read = set()
    for policy in props(tpl, function).get("Policies", []):
        for st in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if st.get("Effect") == "Allow" and "secretsmanager:GetSecretValue" in st.get("Action", []):
                read |= {r.get("Ref") for r in st.get("Resource", []) if isinstance(r, dict)}
    return len(read & set(of_type(tpl, SECRET)))


def price(prices: Json, key: str, field: str = "value") -> float:
    """Dollars per unit (for a tiered price, the first tier's)."""
    p = prices["prices"][key]
    return (p["tiers"][0][1] if "tiers" in p else p[field]) / p["per"]


def tiered(prices: Json, key: str, quantity: float) -> float:
    """Dollars for `quantity` units in a month, through the price's tiers."""
    p, total, floor = prices["prices"][key], 0.0, 0.0
    for up_to, rate in p["tiers"]:
        top = quantity if up_to is None else min(quantity, up_to)
        total += max(0.0, top - floor) * rate / p["per"]
        floor = top if up_to is None else up_to
    return total


def measured(op: Json, memory: int) -> Json:
    """The benchmark's figures for `op` at `memory`; stops when that size was not measured."""
    for d in op["durations"]:
        if d["memory_mb"] == memory:
            return d
    sizes = ", ".join(str(d["memory_mb"]) for d in op["durations"])
    fail(f"{op['resource']} has MemorySize {memory} in {TEMPLATE}, but {FUNCTIONS} measured {op['name']} at "
         f"{sizes} MB only: measure {memory} MB with make bench-functions, or give the function a measured size")


def modelled_ms(ctx: Json, op: Json, memory: int) -> float:
    """A deployed call's duration at `memory`: the CPU time the benchmark measured, stretched by
    the CPU share Lambda gives that size (one vCPU at 1,769 MB), plus its DynamoDB round trips
    at the profile's latency. The benchmark's own durations wait on moto, far slower than
    DynamoDB, so they are shown but not billed."""
    share = min(1.0, memory / FULL_VCPU_MB)
    return (measured(op, memory)["cpu_ms"] / share
            + op["dynamodb"]["round_trips"] * ctx["profile"]["dynamodb_ms_per_round_trip"])


def billed_ms(ctx: Json, op: Json, memory: int) -> int:
    """The modelled duration, rounded up to the next 1 ms as Lambda bills it."""
    return math.ceil(modelled_ms(ctx, op, memory))


def per_call(ctx: Json, op: Json, memory: int) -> dict[str, float]:
    """Dollars for one operation at `memory`, by line item (API Gateway at its first tier).

    Writes add one unit per audit event for each index of the audit table (the benchmark counts
    the table's own writes); reads add the profile's extra units (the authorizer's cache misses)."""
    prices, profile, name = ctx["prices"], ctx["profile"], op["name"]
    gb_s = memory / 1024 * billed_ms(ctx, op, memory) / 1000
    reads = op["dynamodb"]["read_units"] + profile.get("extra_read_units_per_operation", {}).get(name, 0.0)
    writes = op["dynamodb"]["write_units"] + profile["audit_events_per_operation"][name] * ctx["audit_indexes"]
    return dict(zip(ITEMS, [
        price(prices, "lambda_request"),
        gb_s * price(prices, "lambda_gb_second", ctx["arch"][name]),
        price(prices, "api_gateway_http_request") if ctx["api"][name] else 0.0,
        reads * price(prices, "dynamodb_read_request_unit"),
        writes * price(prices, "dynamodb_write_request_unit"),
    ]))


def per_mau(profile: Json, names: list[str]) -> dict[str, float]:
    """Operations per MAU per month, from the profile."""
    hours = profile["active_days_per_month"] * profile["active_hours_per_active_day"]
    counts = {"login": profile["sign_ins_per_mau"], "mfa_verify": profile["sign_ins_per_mau"] * profile["mfa_share"],
              "refresh": hours * 60 / profile["access_token_minutes"],
              "authorizer": hours * profile["api_requests_per_active_hour"]}
    missing = [name for name in names if name not in counts]
    if missing:
        fail(f"the usage profile gives no count per MAU for {', '.join(missing)}")
    return {name: counts[name] for name in names}


def operations_month(ctx: Json, counts: dict[str, float], api_requests: float) -> tuple[dict[str, float], ...]:
    """Dollars by line item and by operation for a month of operations, and each function's busy seconds."""
    api_rate = tiered(ctx["prices"], "api_gateway_http_request", api_requests) / api_requests if api_requests else 0.0
    lines, by_op, busy = dict.fromkeys(ITEMS, 0.0), {}, {}
    for op in ctx["ops"]:
        name, n, memory = op["name"], counts[op["name"]], ctx["memory"][op["name"]]
        items = per_call(ctx, op, memory) | {"API Gateway": api_rate if ctx["api"][name] else 0.0}
        lines = {k: lines[k] + items[k] * n for k in ITEMS}
        by_op[name] = sum(items.values()) * n
        busy[op["resource"]] = busy.get(op["resource"], 0.0) + n * billed_ms(ctx, op, memory) / 1000
    return lines, by_op, busy


def storage_month(ctx: Json, counts: dict[str, float], mau: int) -> tuple[dict[str, float], dict[str, float]]:
    """Dollars for the tables and their backups once the audit retention period has passed, and volumes."""
    tpl, profile, gb_month = ctx["tpl"], ctx["profile"], price(ctx["prices"], "dynamodb_storage")
    events = sum(n * profile["audit_events_per_operation"][name] for name, n in counts.items())
    stored = events * param(tpl, {"Ref": "AuditRetentionDays"}) / DAYS_PER_MONTH
    copies = 1 + ctx["audit_indexes"]  # each index holds a copy of each event
    main_gb = mau * profile["registered_users_per_mau"] * profile["main_table_bytes_per_user"] / GB
    audit_gb = stored * profile["audit_event_bytes"] / GB
    pitr_gb = sum(gb for table, gb in ((MAIN_TABLE, main_gb), (AUDIT_TABLE, audit_gb))
                  if props(tpl, table).get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"))
    return {"DynamoDB storage, main table": main_gb * gb_month,
            f"DynamoDB storage, audit table and its {copies - 1} indexes": audit_gb * copies * gb_month,
            "DynamoDB point-in-time recovery": pitr_gb * price(ctx["prices"], "dynamodb_pitr")}, {
        "audit events written": events, "audit events stored, once the retention period has passed": stored,
        "GB stored, main table": main_gb, "GB stored, audit table with its indexes": audit_gb * copies}


def fixed_month(ctx: Json, busy: dict[str, float], mau: int) -> tuple[dict[str, float], dict[str, float]]:
    """Dollars for secrets, mail and key rotation in a month, and volumes."""
    tpl, prices, profile = ctx["tpl"], ctx["prices"], ctx["profile"]
    target = props(tpl, of_type(tpl, "AWS::SecretsManager::RotationSchedule")[0])["RotationLambdaARN"]["Fn::GetAtt"]
    rotator = target[0] if isinstance(target, list) else target.split(".")[0]  # [Name, Arn] or "Name.Arn"
    rot, busy_hours = profile["key_rotation"], profile["busy_hours_per_month"]
    rotations = DAYS_PER_MONTH / param(tpl, {"Ref": "SigningKeyRotationDays"})
    secret_calls = rotations * rot["secret_calls_per_rotation"]
    for fn in of_type(tpl, "AWS::Serverless::Function"):  # each warm environment reads its secrets
        if fn != rotator and secrets_read(tpl, fn):
            warm = max(1, math.ceil(busy.get(fn, 0.0) / (busy_hours * 3600) * profile["peak_factor"]))
            secret_calls += warm * busy_hours * profile["secret_reads_per_environment_hour"] * secrets_read(tpl, fn)
    rot_calls = rotations * rot["invocations_per_rotation"]
    rot_gb_s = setting(tpl, rotator, "MemorySize") / 1024 * rot["ms_per_invocation"] / 1000
    rot_price = price(prices, "lambda_request") + rot_gb_s * price(
        prices, "lambda_gb_second", setting(tpl, rotator, "Architectures")[0])
    mails, secrets = mau * sum(profile["mails_per_mau"].values()), len(of_type(tpl, SECRET))
    return {f"Secrets Manager, {secrets} secrets": secrets * price(prices, "secrets_manager_secret"),
            "Secrets Manager, API calls": secret_calls * price(prices, "secrets_manager_api_call"),
            "SES mail": mails * price(prices, "ses_outbound_email"),
            "Key rotation (Lambda)": rot_calls * rot_price}, {
        "key-rotation invocations": rot_calls, "mails": mails, "Secrets Manager API calls": secret_calls}


def monthly(ctx: Json, mau: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Dollars by line item, dollars by operation, and volumes, for one month at `mau`."""
    counts = {name: n * mau for name, n in ctx["per_mau"].items()}
    api_requests = sum(n for name, n in counts.items() if ctx["api"][name])
    lines, by_op, busy = operations_month(ctx, counts, api_requests)
    storage, stored = storage_month(ctx, counts, mau)
    fixed, used = fixed_month(ctx, busy, mau)
    by_op |= {"storage and backups": sum(storage.values()), "secrets, mail, key rotation": sum(fixed.values())}
    volumes = {f"{name} operations": n for name, n in counts.items()} | {
        "API Gateway requests": api_requests, "Lambda invocations": sum(counts.values())}
    return lines | storage | fixed, by_op, volumes | stored | used


def money(x: float) -> str:
    if x == 0:
        return "$0"
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:,.2f}" if x >= 0.01 else f"${x:.{1 - math.floor(math.log10(x))}f}"


def count(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}".rstrip("0").rstrip(".")


def exact(x: float) -> str:
    return f"{x:.2f}" if round(x, 2) == x else format(Decimal(str(x)), "f")


def shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {shown(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(shown(v) for v in value)
    return value if isinstance(value, str) else count(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def assumptions(ctx: Json) -> list[str]:
    rows = []
    for key, p in ctx["prices"]["prices"].items():
        tiers = [f"${exact(rate)}" + (f" up to {count(up_to)}" if up_to else "") for up_to, rate in p.get("tiers", [])]
        values = [f"{k} ${exact(p[k])}".removeprefix("value ") for k in ("value", "arm64", "x86_64") if k in p]
        unit = f"per {count(p['per'])} {p['unit']}" if p["per"] != 1 else f"per {p['unit']}"
        checked = "yes" if p["checked"] else "**no**"
        rows.append([key, ", then ".join(tiers) or "; ".join(values), unit, p["source"], checked])
    profile = ctx["profile"]
    return ["### Prices\n", table(["Item", "USD", "Unit", "Source", "Checked"], rows), "### Usage profile\n",
            table(["Field", "Value", "Why"], [[k, shown(v), profile.get("why", {}).get(k, "")]
                                              for k, v in profile.items() if k not in ("name", "why")])]


def per_million(ctx: Json) -> list[str]:
    rows, sizes = [], []
    for op in ctx["ops"]:
        name, mem = op["name"], ctx["memory"][op["name"]]
        c = per_call(ctx, op, mem)
        cells = [money(c[i] * 1e6) if i != "API Gateway" or ctx["api"][name] else "– (your API's)" for i in ITEMS]
        rows.append([name, f"{op['resource']}, {mem} MB, {ctx['arch'][name]}", str(billed_ms(ctx, op, mem)), *cells,
                     money(sum(c.values()) * 1e6)])
        for d in op["durations"]:
            size = d["memory_mb"]
            c = per_call(ctx, op, size)
            sizes.append([name, f"{size}" + (" (template)" if size == mem else ""), count(d["cpu_ms"]),
                          count(modelled_ms(ctx, op, size)), count(d["median_ms"]),
                          count(size / 1024 * billed_ms(ctx, op, size) * 1000),
                          money((c["Lambda requests"] + c["Lambda compute"]) * 1e6), money(sum(c.values()) * 1e6)])
    return ["### Per million operations, at the template's memory sizes\n",
            table(["Operation", "Function", "Billed ms", *ITEMS, "Total"], rows),
            "### Per million operations, at every measured memory size\n",
            table(["Operation", "Memory MB", "CPU ms", "Modelled ms", "Measured ms (moto)", "GB-s per 1M",
                   "Lambda (requests + compute)", "Total"], sizes)]


def per_month(scales: list[tuple[dict[str, float], ...]], heads: list[str]) -> list[str]:
    totals = [f"**{money(sum(s[0].values()))}**" for s in scales]
    return ["### Per month, by line item\n",
            table(["Line item", *heads], [[k, *(money(s[0][k]) for s in scales)] for k in scales[0][0]]
                  + [["**Total**", *totals]]),
            "### Per month, by operation\n",
            table(["Operation", *heads], [[k, *(money(s[1][k]) for s in scales)] for k in scales[0][1]]),
            "### Volumes per month\n",
            table(["Volume", *heads], [[k, *(count(s[2][k]) for s in scales)] for k in scales[0][2]])]


def against_cognito(ctx: Json, scales: list[tuple[dict[str, float], ...]], heads: list[str]) -> list[str]:
    prices, profile, maus = ctx["prices"], ctx["profile"], ctx["profile"]["mau"]
    plans = {p: [tiered(prices, f"cognito_{p.lower()}_mau", m) for m in maus] for p in ("Lite", "Essentials", "Plus")}
    client = (price(prices, "cognito_m2m_app_client")
              + profile["m2m_token_requests_per_token"] * price(prices, "cognito_m2m_token_request"))
    plans["M2M"] = [m * profile["api_tokens_per_1000_mau"] / 1000 * client for m in maus]
    rows = [[f"Cognito {p}", *map(money, v)] for p, v in plans.items()]
    rows[-1][0] += f" ({count(profile['api_tokens_per_1000_mau'])} app clients per 1,000 MAU)"
    rows += [["Cognito Plus + M2M", *(money(a + b) for a, b in zip(plans["Plus"], plans["M2M"]))],
             ["Gatehouse", *(money(sum(s[0].values())) for s in scales)],
             ["Gatehouse without its Lambda authorizer",
              *(money(sum(s[0].values()) - s[1].get("authorizer", 0.0)) for s in scales)]]
    return ["### Cognito at the same scales\n", table(["Per month", *heads], rows)]


def render(profile_path: Path) -> str:
    tpl = yaml.load((ROOT / TEMPLATE).read_text(), Loader=CfnLoader)
    bench, prices, profile = (json.loads((ROOT / p).read_text()) for p in (FUNCTIONS, PRICES, profile_path))
    ops = bench["operations"]
    ctx = {"tpl": tpl, "prices": prices, "profile": profile, "ops": ops,
           "per_mau": per_mau(profile, [op["name"] for op in ops]),
           "audit_indexes": len(props(tpl, AUDIT_TABLE).get("GlobalSecondaryIndexes", [])),
           "memory": {op["name"]: setting(tpl, op["resource"], "MemorySize") for op in ops},
           "arch": {op["name"]: setting(tpl, op["resource"], "Architectures")[0] for op in ops},
           "api": {op["name"]: any(e.get("Type") == "HttpApi"
                                   for e in props(tpl, op["resource"]).get("Events", {}).values()) for op in ops}}
    out = [f"Inputs: `{FUNCTIONS}` (measured on {bench['measured_on']} by `{bench['command']}`), `{PRICES}` "
           f"(read on {prices['read_on']}, {prices['region']}), `{profile_path}` (\"{profile['name']}\"), "
           f"`{TEMPLATE}`.\n"]
    if bench.get("note"):
        out.append(f"**{bench['note']}**\n")
    scales = [monthly(ctx, mau) for mau in profile["mau"]]
    heads = [f"{count(mau)} MAU" for mau in profile["mau"]]
    out += assumptions(ctx) + per_million(ctx) + per_month(scales, heads) + against_cognito(ctx, scales, heads)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"replace the generated block of {DOC}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 if the block of {DOC} is out of date")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="print the tables for this usage profile")
    args = parser.parse_args()
    if args.profile and (args.write or args.check):
        parser.error(f"--profile only prints: {DOC} is generated from {PROFILE}")
    block = render(args.profile.resolve() if args.profile else PROFILE)
    if not (args.write or args.check):
        sys.stdout.write(block)
        return
    doc = (ROOT / DOC).read_text()
    if doc.count(BEGIN) != 1 or doc.count(END) != 1 or doc.index(BEGIN) > doc.index(END):
        fail(f"{DOC} needs one {BEGIN} followed by one {END}")
    head, rest = doc.split(BEGIN)
    current, tail = rest.split(END)
    wanted = "\n" + block + "\n"
    if args.write:
        (ROOT / DOC).write_text(head + BEGIN + wanted + END + tail)
    elif current != wanted:
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), wanted.splitlines(True),
                                                   f"{DOC} (as it is)", f"{DOC} (as cost.py would write it)"))
        fail(f"{DOC} is out of date: run make cost (scripts/cost.py --write)")


if __name__ == "__main__":
    main()
