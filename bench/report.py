"""Markdown tables from a results JSON (what BENCHMARKS.md quotes).

``python -m bench.report bench/results/<file>.json`` prints them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _pcts(p: dict[str, Any], keys: tuple[str, ...] = ("p50", "p95", "p99", "max")) -> str:
    if not p or not p.get("count"):
        return "–"
    return " / ".join(_num(p.get(k)) for k in keys)


def _cores(cpu: dict[str, Any], name: str) -> str:
    return _num(cpu.get(name), 2) if cpu else "–"


def _burst_section(burst: dict[str, Any]) -> list[str]:
    """The burst phase (``bench.burst``): a flash-sale backlog, a fresh worker."""
    if not burst:
        return []
    shape = burst.get("input", {})
    lines = [
        "",
        "### Burst (a flash-sale backlog produced before a fresh worker starts)",
        "",
        f"{shape.get('events', 0):,} events (simulated mix, "
        + ", ".join(f"{k} {n:,}" for k, n in shape.get("by_kind", {}).items())
        + f"; {shape.get('admitted', 0):,} admitted): customers Zipf-distributed "
        f"(s = {shape.get('zipf_exponent')}) over {shape.get('customers', 0):,} "
        f"({shape.get('customers_seen', 0):,} seen; the busiest has "
        f"{_num((shape.get('top_customer_share') or 0) * 100, 1)} % of the events, the top 10 "
        f"{_num((shape.get('top_10_customers_share') or 0) * 100, 1)} %), and live room "
        f"`{shape.get('hot_room')}` has {_num((shape.get('hot_room_share') or 0) * 100, 1)} % "
        "of all events (comments, likes, product clicks, add-to-carts); "
        f"{_num(shape.get('event_time_seconds'), 0)} s of event time.",
        "",
    ]
    if burst.get("error"):
        return [*lines, f"Burst failed: {burst['error'][:400]}"]
    acc = burst.get("accounting", {})
    cpu = burst.get("cpu_cores", {})
    lines += [
        "| worker start → accounted | of which startup | events/s from start | "
        "drain events/s | worker CPU | peak RSS (at ready → last sample) | mean batch | "
        "processed + duplicate + erased + dead-lettered = input |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {_num(burst.get('seconds'), 1)} s | {_num(burst.get('startup_seconds'), 1)} s | "
        f"{_num(burst.get('events_per_s'))} | {_num(burst.get('drain_events_per_s'))} | "
        f"{_cores(cpu, 'worker')} | {_num(burst.get('peak_rss_mib'))} MiB "
        f"({_num(burst.get('rss_mib_first_sample'))} → {_num(burst.get('rss_mib_last_sample'))}) | "
        f"{_num(burst.get('mean_batch_records'))} | "
        f"{acc.get('processed', 0):,} + {acc.get('duplicate', 0):,} + {acc.get('erased', 0):,} "
        f"+ {acc.get('dead_lettered', 0):,} = {acc.get('accounted', 0):,} "
        f"{'=' if acc.get('all_accounted') else '≠'} {acc.get('input', 0):,} |",
    ]
    return lines


def render(r: dict[str, Any]) -> str:
    m, v, cfg = r["machine"], r["versions"], r["config"]
    w = r.get("worker", {})
    wc = w.get("closed_loop", {})
    b = r.get("baseline", {})
    bc = b.get("closed_loop", {})
    ceil = r.get("ceiling", {})
    prof = r.get("profile", {})
    pc = prof.get("closed_loop_under_profiler", {})
    lines = [
        f"Run {r['date']}, commit `{r['git']['commit'][:12]}`"
        + (" (work tree had uncommitted changes)" if r["git"].get("worktree_dirty") else "")
        + f"; {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; "
        f"Python {v['python']}, Kafka {v['kafka']}, faust-streaming {v['faust-streaming']}, "
        f"aiokafka {v['aiokafka']}, pydantic {v['pydantic']}, orjson {v['orjson']}.",
        "",
        f"Command: `{r['command']}`",
        "",
        *(
            [
                "Worker settings: "
                + ", ".join(f"`{k}={v}`" for k, v in cfg["worker_settings"].items())
                + " (the others at their defaults).",
                "",
            ]
            if cfg.get("worker_settings")
            else []
        ),
        f"Input: {cfg['events']:,} simulated events (seed {cfg['seed']}, "
        f"{cfg['customers']:,} customers, dirty share {cfg['dirty_share']}: "
        + ", ".join(f"{k} {n:,}" for k, n in r["input"]["by_kind"].items())
        + f"), mean {r['input']['mean_value_bytes']:.0f} bytes; {cfg['partitions']} partitions; "
        f"{ceil.get('admitted', 0):,} admitted."
        + (
            " The worker ran without idle ticks (event time lies hours behind the wall "
            "clock here; ticks would make every later event late)."
            if cfg.get("worker_tick_interval_seconds") == 0
            else ""
        ),
        "",
        "### Throughput (closed loop: events pre-produced, every input counted)",
        "",
        "| what | events/s | seconds | its CPU cores | broker cores | other processes |",
        "|---|---:|---:|---:|---:|---:|",
        f"| worker (Faust), until offsets committed | {_num(wc.get('events_per_s'))} | "
        f"{_num(wc.get('seconds'), 1)} | {_cores(wc.get('cpu_cores', {}), 'worker')} | "
        f"{_cores(wc.get('cpu_cores', {}), 'broker')} | "
        f"{_cores(wc.get('cpu_cores', {}), 'other_processes')} |",
        "| worker (Faust), until its last event was applied | "
        f"{_num(wc.get('events_per_s_by_last_write'))} "
        f"| {_num(wc.get('seconds_to_last_journey_write'), 1)} | | | |",
        f"| baseline (raw aiokafka), until offsets committed | {_num(bc.get('events_per_s'))} | "
        f"{_num(bc.get('seconds'), 1)} | {_cores(bc.get('cpu_cores', {}), 'baseline')} | "
        f"{_cores(bc.get('cpu_cores', {}), 'broker')} | "
        f"{_cores(bc.get('cpu_cores', {}), 'other_processes')} |",
    ]
    if "batch_protocol" in ceil:
        bp = ceil["batch_protocol"]
        lines.append(
            "| **ceiling: the worker's batch protocol in process** (LocalRuntime: admit, "
            f"One-ID, journey, timers, codecs; {_num(bp.get('us_per_event'))} µs/event) | "
            f"**{_num(bp.get('events_per_s'))}** | {_num(bp.get('seconds'), 1)} | 1 | | |"
        )
    small = ceil.get("small_batches")
    if small:
        lines.append(
            f"| ceiling: the same in batches of {small['chunk']} (as paced traffic fetches "
            f"them), on a built state ({_num(small.get('us_per_event'))} µs/event) | "
            f"{_num(small.get('events_per_s'))} | {_num(small.get('seconds'), 1)} | 1 | | |"
        )
    core, codecs = ceil.get("core", {}), ceil.get("core_and_codecs", {})
    first = (
        f", first {core['events']:,} events"
        if core.get("events") and core["events"] != ceil.get("events")
        else ""
    )
    lines += [
        f"| ceiling: admit + step only (no One-ID{first}) | {_num(core.get('events_per_s'))} "
        f"| {_num(core.get('seconds'), 1)} | 1 | | |",
        f"| ceiling: admit + step + per-event codecs (no One-ID{first}) | "
        f"{_num(codecs.get('events_per_s'))} | {_num(codecs.get('seconds'), 1)} | 1 | | |",
    ]
    alone = ceil.get("codecs")
    if alone:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in alone["us_per_event_by_part"].items())
        lines.append(
            f"| ceiling: the codecs alone, timed inside admit + step{first} "
            f"({_num(alone.get('us_per_event'), 1)} µs/event: {parts}) | "
            f"{_num(1e6 / alone['us_per_event'] if alone.get('us_per_event') else None)} "
            "| | 1 | | |"
        )
    limit = r.get("broker_limit", {})
    for step, tool in (
        ("produce", "ProducerPerformance, acks=all"),
        ("consume", "ConsumerPerformance"),
    ):
        got = limit.get(step)
        if not got:
            continue
        cpu = got.get("cpu_cores", {})
        lines.append(
            f"| broker limit: Kafka's {tool}, records/s ({limit['records']:,} × "
            f"{limit['record_bytes']} B) | {_num(got.get('records_per_s'))} | "
            f"{_num(got.get('seconds'), 1)} | {_cores(cpu, 'tool')} | {_cores(cpu, 'broker')} | "
            f"{_cores(cpu, 'other_processes')} |"
        )
    burst = r.get("burst", {})
    if burst.get("events_per_s"):
        bcpu = burst.get("cpu_cores", {})
        lines.append(
            f"| worker (Faust), burst: fresh worker on a {burst['events']:,}-event flash-sale "
            f"backlog, from its start until offsets committed | "
            f"{_num(burst.get('events_per_s'))} | {_num(burst.get('seconds'), 1)} | "
            f"{_cores(bcpu, 'worker')} | {_cores(bcpu, 'broker')} | "
            f"{_cores(bcpu, 'other_processes')} |"
        )
    if pc:
        lines.append(
            f"| worker under py-spy (profile run) | {_num(pc.get('events_per_s'))} | "
            f"{_num(pc.get('seconds'), 1)} | {_cores(pc.get('cpu_cores', {}), 'worker')} | "
            f"{_cores(pc.get('cpu_cores', {}), 'broker')} | "
            f"{_cores(pc.get('cpu_cores', {}), 'other_processes')} |"
        )
    lines += _burst_section(burst)
    lines += [
        "",
        "### End-to-end latency, open loop (ms: p50 / p95 / p99 / max)",
        "",
        "Rates are fractions of the worker's closed-loop throughput; the baseline gets the "
        "same records at the same rates. Latency = time of the first journey record "
        "(worker: changelog, a journey's record or a page of its window; baseline: state "
        "topic) whose `recent` event ids hold the event for the first time (one worker "
        "record covers all of a key's events in a batch) − the event's scheduled send "
        "time. Outputs: `emitted_at` − send time, for outputs decided by the event itself.",
        "",
        "| load | events/s | worker: journey write | worker: outputs (n) | worker CPU | "
        "worker drained after | baseline: journey write | baseline: outputs (n) |",
        "|---|---:|---|---|---:|---:|---|---|",
    ]
    bph = {ph["level"]: ph for ph in b.get("open_loop", [])}
    for ph in w.get("open_loop", []):
        bp = bph.get(ph["level"], {})
        wo = ph.get("latency_ms_to_output_immediate", {})
        bo = bp.get("latency_ms_to_output_immediate", {})
        lines.append(
            f"| {ph['level']:.2f} × max | {_num(ph['achieved_send_rate'])} | "
            f"{_pcts(ph.get('latency_ms_to_journey_write', {}))} | "
            f"{_pcts(wo, ('p50', 'p95', 'p99'))} ({wo.get('count', 0)}) | "
            f"{_cores(ph.get('cpu_cores', {}), 'worker')} | "
            f"{_num(ph['drained_s_after_last_send'], 1)} s | "
            f"{_pcts(bp.get('latency_ms_to_journey_write', {}))} | "
            f"{_pcts(bo, ('p50', 'p95', 'p99'))} ({bo.get('count', 0)}) |"
        )
    if any("latency_ms_input_to_rekeyed_record" in ph for ph in w.get("open_loop", [])):
        lines += [
            "",
            "Worker latency by hop (ms: p50 / p95 / p99 / max):",
            "",
            "| load | input → re-keyed record (admission) | re-keyed record → journey write "
            "(One-ID + journey) |",
            "|---|---|---|",
        ]
        for ph in w["open_loop"]:
            lines.append(
                f"| {ph['level']:.2f} × max | "
                f"{_pcts(ph.get('latency_ms_input_to_rekeyed_record', {}))} | "
                f"{_pcts(ph.get('latency_ms_rekeyed_record_to_journey_write', {}))} |"
            )
    chl = w.get("changelog", {})
    bst = b.get("state_topic", {})
    lines += [
        "",
        f"Changelog bytes: worker {_num(chl.get('bytes_per_input_event'))} per input event "
        f"({_num(chl.get('bytes_per_admitted_event'))} per admitted event) over "
        + ", ".join(
            f"`{t.split('-', 3)[-1]}` {_num(s['records'])} records × "
            f"{_num(s['bytes_per_record'])} B"
            for t, s in chl.get("topics", {}).items()
        )
        + f"; baseline state topic {_num(bst.get('bytes_per_input_event'))} per input event.",
    ]
    compacted = [
        f"`{topic}` keeps {_num(s['records'])} of {_num(s['records_by_offsets'])}"
        for stats in (chl, bst)
        for topic, s in stats.get("topics", {}).items()
        if s.get("records_by_offsets") and s["records"] < s["records_by_offsets"]
    ]
    if compacted:
        lines.append(
            "**Compaction ran during the run** (first writes were removed, so latencies "
            "and bytes of these topics are not to be trusted): " + "; ".join(compacted) + "."
        )
    if chl.get("on_disk"):
        lines.append(
            f"On the broker's disk (batches as produced, compressed): worker "
            f"{_num(chl['on_disk'].get('bytes_per_input_event'))} per input event; baseline "
            f"{_num(bst.get('on_disk', {}).get('bytes_per_input_event'))}."
        )
    written = ceil.get("tables_written", {})
    if written:
        lines.append(
            "In process (the ceiling's batch protocol, same inputs; no Kafka, so no timing "
            "in it): "
            + ", ".join(
                f"`{t}` {_num(s['bytes_per_event'])} B in {s['records_per_event']} records"
                for t, s in written.items()
            )
            + f" per input event; {_num(sum(s['bytes_per_event'] for s in written.values()))} "
            "in all."
        )
    sizes = ceil.get("state_bytes_at_end", {})
    if sizes:
        lines += [
            "",
            f"Journey state after the closed loop ({_num(sizes.get('customers'))} customers): "
            f"median {_num(sizes.get('median'))} B, p99 {_num(sizes.get('p99'))} B, "
            f"max {_num(sizes.get('max'))} B; each remembered event id adds "
            f"{_num(sizes.get('bytes_per_remembered_event_id'), 1)} B"
            + (
                f". The journeys table record a change rewrites (no window, no decision "
                f"fields): median {_num(sizes['record_median'])} B, p99 "
                f"{_num(sizes['record_p99'])} B."
                if "record_median" in sizes
                else "."
            ),
        ]
    if prof.get("samples"):
        lines += [
            "",
            f"### Profile (py-spy, {prof['samples']:,} "
            + (
                "samples holding the interpreter lock"
                if "--gil" in prof.get("tool", "")
                else "active samples"
            )
            + " of the worker process; "
            + ", ".join(f"{k} {p}%" for k, p in prof.get("threads_pct", {}).items())
            + ")",
            "",
            "| layer (self time, leaf-first) | % |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {p} |" for k, p in prof["categories_self_pct"].items() if p >= 0.5]
        lines += ["", "| stage (inclusive) | % |", "|---|---:|"]
        lines += [f"| {k} | {p} |" for k, p in prof["stages_inclusive_pct"].items()]
        lines += ["", "| top cumulative | file | incl. % | self % |", "|---|---|---:|---:|"]
        lines += [
            f"| `{e['function']}` | {e['file']} | {e['inclusive_pct']} | {e['self_pct']} |"
            for e in prof["top_cumulative"][:20]
        ]
    if limit.get("error"):
        lines += ["", f"Broker limit failed: {limit['error'][:400]}"]
    if prof.get("error"):
        lines += ["", f"Profile run failed: {prof['error'][:400]}"]
    if r.get("notes"):
        lines += ["", "Notes: " + "; ".join(r["notes"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    for path in args:
        sys.stdout.write(render(orjson.loads(Path(path).read_bytes())))


if __name__ == "__main__":
    main()
