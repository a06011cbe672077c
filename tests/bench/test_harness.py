"""The benchmark harness, run in its tiny mode: every figure is there, the JSON has exactly the
binding keys (numbers, or null for the etcd figures when etcd is not measured), the table and the
plot render, the load it generates is valid, and the CLI command writes its files."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from medledger.bench import JSON_KEYS, BenchConfig, BenchReport, run_bench
from medledger.bench.baseline import SpeedSampler, make_checks
from medledger.bench.commit_path import BENCH_START_MS, BenchPeer, measure_commit_path
from medledger.bench.growth import GrowthPoint, GrowthResult, ReferencePeer
from medledger.bench.network import LoadPoint, signed_load
from medledger.bench.replicated import NOT_MEASURED, REPLICATED_LATENCY_LIMIT_MS
from medledger.bench.workload import Consortium, LoadGenerator
from medledger.cli import bench as bench_command
from medledger.cli.main import app as main_app
from medledger.node.deployment import DEPLOYED_CUTTER


@pytest.fixture(scope="module")
def tiny_report() -> BenchReport:
    with tempfile.TemporaryDirectory() as scratch:
        return run_bench(BenchConfig.tiny(), work_dir=Path(scratch), etcd=False)


def test_each_growth_point_carries_the_machine_speed_around_its_window(tiny_report: BenchReport) -> None:
    # Assert: measured, and the corrected ratio is the rates' ratio scaled by the speeds' inverse ratio
    growth = tiny_report.growth
    first, top = growth.points[0], growth.points[-1]
    assert all(point.verify_per_s > 1_000 for point in growth.points)
    expected = growth.commit_ratio * first.verify_per_s / top.verify_per_s
    assert growth.speed_corrected_ratio == pytest.approx(expected)
    assert tiny_report.to_json()["growth_commit_ratio_speed_corrected"] == pytest.approx(expected, rel=1e-3)


def test_the_commit_ratio_divides_by_the_verify_rate_sampled_between_the_commit_paths_chunks(
    tiny_report: BenchReport,
) -> None:
    # Prepare: the tiny run commits 2 blocks, in 2 chunks of one (6 chunks at most)
    commit = tiny_report.commit
    document = tiny_report.to_json()
    # Assert: a slice before the first chunk and after each; the ratio pairs the rate with those slices
    assert len(commit.verify_slices) == 3
    assert min(commit.verify_slices) <= commit.verify_per_s <= max(commit.verify_slices)
    assert document["commit_verify_per_s"] == pytest.approx(commit.verify_per_s, rel=1e-3)
    # (the JSON rounds ratios to three decimals)
    assert document["commit_ratio"] == pytest.approx(commit.tps / commit.verify_per_s, abs=6e-4)
    assert document["commit_ratio_to_run_baseline"] == pytest.approx(
        commit.tps / tiny_report.baseline_verify_per_s, abs=6e-4
    )


def test_the_speed_sampler_pools_its_slices_and_refuses_a_bad_signature() -> None:
    # Prepare
    checks = make_checks(20)
    sampler = SpeedSampler(checks, slice_seconds=0.05)
    public_key, payload, signature = checks[0]
    forged = SpeedSampler([(public_key, payload + b"!", signature)], slice_seconds=0.05)
    # Execute
    before = sampler.rate
    rates = [sampler.sample() for _ in range(3)]
    # Assert
    assert math.isnan(before)
    assert sampler.slices == rates
    assert min(rates) <= sampler.rate <= max(rates)
    with pytest.raises(AssertionError, match="did not verify"):
        forged.sample()


def test_a_machine_half_as_fast_at_the_top_checkpoint_doubles_the_corrected_ratio() -> None:
    # Prepare: the same commit rate at both sizes, measured while the machine ran at half speed at the top
    small = GrowthPoint(10_000, 4_000.0, 250.0, 0.2, 0.3, 5.0, 1, verify_per_s=16_000.0)
    large = GrowthPoint(1_000_000, 2_000.0, 250.0, 0.2, 0.3, 5.0, 1, verify_per_s=8_000.0)
    # Execute
    growth = GrowthResult((small, large), seconds=1.0, signing_seconds=0.0)
    # Assert
    assert growth.commit_ratio == pytest.approx(0.5)
    assert growth.speed_corrected_ratio == pytest.approx(1.0)


def test_the_growth_target_is_judged_on_the_small_ledger_committing_in_turns_with_the_large(
    tiny_report: BenchReport,
) -> None:
    # Prepare: at 1,000,000 the rate halved, and so did the small ledger's beside it (the machine slowed);
    # then the small ledger kept its pace while the large one lost 30%
    small = GrowthPoint(10_000, 4_000.0, 250.0, 0.2, 0.3, 5.0, 1, verify_per_s=16_000.0)
    slower_machine = GrowthPoint(
        1_000_000, 2_000.0, 250.0, 0.2, 0.3, 5.0, 1, verify_per_s=8_000.0, reference_tps=2_000.0
    )
    slower_ledger = dataclasses.replace(
        slower_machine, commit_tps=2_800.0, verify_per_s=16_000.0, reference_tps=4_000.0
    )

    def growth_target(top: GrowthPoint) -> tuple[bool, str]:
        report = dataclasses.replace(tiny_report, growth=GrowthResult((small, top), seconds=1.0, signing_seconds=0.0))
        return next((met, figure) for target, met, figure in report.targets() if target.startswith("growth"))

    # Execute / Assert
    assert growth_target(slower_machine) == (True, "1.00 at 1,000,000 (over the verify rate 1.00, raw 0.50)")
    assert growth_target(slower_ledger) == (False, "0.70 at 1,000,000 (over the verify rate 0.70, raw 0.70)")


def test_each_later_growth_point_is_paired_with_the_first_checkpoints_ledger(tiny_report: BenchReport) -> None:
    # Prepare
    growth = tiny_report.growth
    first, later = growth.points[0], growth.points[1:]
    # Assert: measured beside every later window (not the first, which it is a copy of)
    assert math.isnan(first.reference_tps)
    assert later and all(point.reference_tps > 0 for point in later)
    expected = growth.top.commit_tps / growth.top.reference_tps
    assert growth.paired_ratio == pytest.approx(expected)
    assert tiny_report.to_json()["growth_commit_ratio_paired"] == pytest.approx(expected, rel=1e-3)


def test_the_reference_peer_commits_the_same_valid_blocks_from_the_same_state_each_time(tmp_path: Path) -> None:
    # Prepare: a small ledger, copied with the next 6 blocks signed for it
    bench = BenchPeer(tmp_path / "ledger", workers=1)
    bench.set_up()
    for timestamp, transactions in bench.sign_blocks(2, 100):
        bench.apply(timestamp, transactions)
    height = bench.peer.executed_height()
    reference = ReferencePeer(bench, tmp_path / "reference", blocks=6, block_size=100, chunk_blocks=2)
    tips = []
    try:
        # Execute: two windows, each on a fresh copy
        for _ in range(2):
            reference.start()
            rates = [reference.sample(), reference.sample()]
            running = reference._running
            assert running is not None
            tips.append((running.peer.executed_height(), running.peer.store.last_header(), reference.valid))
            assert all(rate > 0 for rate in rates)
            with pytest.raises(RuntimeError, match="only 6 blocks signed"):
                reference.sample()
    finally:
        reference.stop()
        bench.close()
    # Assert: the same six blocks of 100 (two of them the untimed warm-up), the four timed all valid, on top of
    # the copied height, both times; the original untouched
    assert tips[0] == tips[1]
    assert tips[0][0] == height + 6 and tips[0][2] == 400
    assert bench.peer.executed_height() == height


def test_the_json_has_exactly_the_binding_keys_as_numbers(tiny_report: BenchReport) -> None:
    # Prepare / Execute
    document = tiny_report.to_json()
    # Assert
    assert set(document) == {*JSON_KEYS, "details"}
    for key in JSON_KEYS:
        if key.startswith("etcd_"):
            assert document[key] is None
        else:
            assert isinstance(document[key], (int, float)) and document[key] > 0, key
    assert document["details"]["etcd"] == NOT_MEASURED
    json.dumps(document, allow_nan=False)


def test_every_figure_is_shown_beside_the_baseline(tiny_report: BenchReport) -> None:
    # Prepare
    out = io.StringIO()
    console = Console(file=out, width=200)
    # Execute
    tiny_report.render(console)
    # Assert
    text = out.getvalue()
    assert NOT_MEASURED in text
    assert f"{tiny_report.baseline_verify_per_s:,.0f}" in text
    assert "commit path" in text and "targets" in text


def test_the_plot_is_a_png(tiny_report: BenchReport, tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "bench.png"
    # Execute
    tiny_report.plot(path)
    # Assert
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_load_is_all_valid_transactions(tmp_path: Path) -> None:
    # Prepare / Execute
    result = measure_commit_path(tmp_path, blocks=3, block_size=200, workers=1)
    # Assert
    assert result.transactions == 600
    assert result.valid == result.transactions


def test_the_cli_command_writes_the_json_and_the_plot(
    tiny_report: BenchReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the command renders the tiny run's report instead of running the quick one
    asked: list[BenchConfig] = []

    def run(config: BenchConfig, **_: object) -> BenchReport:
        asked.append(config)
        return tiny_report

    monkeypatch.setattr("medledger.bench.run_bench", run)
    app = typer.Typer()
    app.command()(bench_command.bench)
    json_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    # Execute
    result = CliRunner().invoke(
        app, ["--quick", "--json", str(json_path), "--plot", str(plot_path), "--work-dir", str(tmp_path)]
    )
    # Assert
    assert result.exit_code == 0, result.output
    assert [config.quick for config in asked] == [True]
    assert "not measured: etcd backend unavailable" in result.output
    assert set(json.loads(json_path.read_text())) >= set(JSON_KEYS)
    assert plot_path.exists()


def test_a_saved_report_reads_back_with_the_same_figures_and_targets(tiny_report: BenchReport) -> None:
    # Prepare
    document = json.loads(json.dumps(tiny_report.to_json()))
    # Execute
    reloaded = BenchReport.from_json(document)
    # Assert: the same figures (as saved: rounded to three decimals) and the same verdicts
    for key, value in tiny_report.figures().items():
        assert reloaded.figures()[key] == (None if value is None else pytest.approx(value, rel=1e-3, abs=1e-3)), key
    assert [met for _, met, _ in reloaded.targets()] == [met for _, met, _ in tiny_report.targets()]
    assert reloaded.commit.verify_slices == pytest.approx(tiny_report.commit.verify_slices, abs=1e-3)
    assert reloaded.network.sweep[0].kept_up == tiny_report.network.sweep[0].kept_up


def test_the_cli_shows_and_plots_a_saved_run_and_names_what_a_bad_file_lacks(
    tiny_report: BenchReport, tmp_path: Path
) -> None:
    # Prepare: a saved run, the same without the networks' cut interval (an older report), and not JSON
    saved, older, garbage = tmp_path / "run.json", tmp_path / "older.json", tmp_path / "garbage.json"
    document = tiny_report.to_json()
    saved.write_text(json.dumps(document))
    del document["details"]["network"]["cut_after_ms"]
    older.write_text(json.dumps(document))
    garbage.write_text("{not json")
    plot = tmp_path / "again.png"
    # Execute
    shown = CliRunner().invoke(main_app, ["bench", "--from-json", str(saved), "--plot", str(plot)])
    refused_older = CliRunner().invoke(main_app, ["bench", "--from-json", str(older)])
    refused_garbage = CliRunner().invoke(main_app, ["bench", "--from-json", str(garbage)])
    refused_plot = CliRunner().invoke(main_app, ["bench", "--quick", "--plot", str(tmp_path / "no" / "p.png")])
    # Assert
    assert shown.exit_code == 0, shown.output
    assert "targets" in shown.output and plot.read_bytes()[:4] == b"\x89PNG"
    for refused in (refused_older, refused_garbage, refused_plot):
        assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "cut_after_ms" in refused_older.output and "--from-json" in refused_older.output
    assert "--from-json" in refused_garbage.output
    assert "--plot" in refused_plot.output


def test_a_work_dir_that_does_not_exist_yet_is_created_and_one_that_cannot_be_is_named(
    tiny_report: BenchReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setattr("medledger.bench.run_bench", lambda config, **_: tiny_report)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    # Execute
    created = CliRunner().invoke(main_app, ["bench", "--quick", "--work-dir", str(tmp_path / "new" / "scratch")])
    refused = CliRunner().invoke(main_app, ["bench", "--quick", "--work-dir", str(a_file / "scratch")])
    # Assert
    assert created.exit_code == 0, created.output
    assert (tmp_path / "new" / "scratch").is_dir()
    assert refused.exit_code == 2
    assert "--work-dir" in refused.output and "Traceback" not in refused.output


def test_the_pre_signed_load_holds_nothing_the_garbage_collector_scans() -> None:
    """The embedded network's clients share the peers' process: what they hold must not lengthen the peers'
    full collections."""
    # Prepare
    generator = LoadGenerator(Consortium.create(BENCH_START_MS))
    now = BENCH_START_MS
    for _ in generator.setup_blocks(now):
        pass
    transactions = generator.block_transactions(50, now)
    # Execute
    load = signed_load(transactions)
    del transactions
    gc.collect()
    # Assert
    assert len(load) == 50
    assert all(isinstance(tx_id, bytes) and isinstance(encoded, bytes) for tx_id, encoded in load)
    assert not any(gc.is_tracked(item) for item in load)


def test_the_process_deployments_target_is_listed_and_not_met_when_not_measured(tiny_report: BenchReport) -> None:
    # Execute
    targets = {target: (met, figure) for target, met, figure in tiny_report.targets()}
    # Assert
    replicated = [target for target in targets if target.startswith("process deployment (etcd)")]
    assert replicated == ["process deployment (etcd) >= 1,500 TPS, p99 <= 1,500 ms"]
    assert targets[replicated[0]] == (False, NOT_MEASURED)


def test_the_embedded_network_is_measured_with_the_process_deployments_cutter(tiny_report: BenchReport) -> None:
    # Prepare
    out = io.StringIO()
    # Execute
    tiny_report.render(Console(file=out, width=200))
    # Assert
    assert tiny_report.network.cut_after_ms == DEPLOYED_CUTTER.time_to_cut_ms
    assert tiny_report.to_json()["details"]["network"]["cut_after_ms"] == DEPLOYED_CUTTER.time_to_cut_ms
    assert f"(cut after {DEPLOYED_CUTTER.time_to_cut_ms} ms)" in out.getvalue()


def test_a_run_without_retries_gives_neither_network_a_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick run keeps to its two minutes: no sustained run is repeated at a lower rate, on either network."""
    # Prepare: the process deployment is not started, only asked for
    asked: list[dict[str, object]] = []

    def replicated(directory: Path, **options: object) -> None:
        asked.append(options)

    monkeypatch.setattr("medledger.bench.harness.measure_replicated", replicated)
    config = BenchConfig.tiny()
    # Execute
    report = run_bench(config, work_dir=tmp_path, etcd=True)
    # Assert
    assert config.sustain_retries == 0 == BenchConfig.quick_run().sustain_retries
    assert [options["sustain_retries"] for options in asked] == [0]
    assert report.etcd is None


def test_a_level_is_kept_up_with_up_to_the_latency_limit_of_the_network_measured() -> None:
    # Prepare: everything committed, p99 1.2 s
    embedded = LoadPoint(
        offered_tps=200, seconds=10.0, submitted=2000, committed=2000, valid=2000, p50_ms=300.0, p99_ms=1_200.0
    )
    replicated = dataclasses.replace(embedded, latency_limit_ms=REPLICATED_LATENCY_LIMIT_MS)
    short = dataclasses.replace(replicated, committed=1999)
    # Assert
    assert not embedded.kept_up
    assert replicated.kept_up
    assert not short.kept_up


def test_the_commit_path_and_the_network_carry_the_machines_cpu_ceiling(tiny_report: BenchReport) -> None:
    # Prepare
    document = tiny_report.to_json()
    commit, sustained = tiny_report.commit, tiny_report.network.sustained
    stat_cores = sum(
        1 for line in Path("/proc/stat").read_text().splitlines() if line[:3] == "cpu" and line[3].isdigit()
    )
    # Assert: the counters' cores, a CPU time per transaction, and the ceiling as cores over it
    assert commit.cores == sustained.cores == stat_cores
    assert document["commit_cpu_us_per_tx"] == pytest.approx(
        commit.machine_cpu_seconds / commit.transactions * 1e6, rel=1e-3
    )
    assert document["commit_ceiling_ratio"] == pytest.approx(
        commit.cores * commit.transactions / commit.machine_cpu_seconds / commit.verify_per_s, abs=6e-4
    )  # the JSON keeps three decimals
    assert document["network_ceiling_tps"] == pytest.approx(
        sustained.cores * sustained.committed / sustained.machine_cpu_seconds, rel=1e-3
    )
    assert "cores allow at most" in tiny_report.targets()[0][2]


def test_a_report_saved_before_the_cpu_ceiling_reads_back_and_renders_without_it(tiny_report: BenchReport) -> None:
    # Prepare: the saved run without the machine's CPU figures, as reports written before them are
    document = json.loads(json.dumps(tiny_report.to_json()))
    for key in ("machine_cpu_seconds", "cores"):
        del document["details"]["commit"][key]
        for point in [*document["details"]["network"]["sweep"], document["details"]["network"]["sustained"]]:
            del point[key]
    out = io.StringIO()
    # Execute
    reloaded = BenchReport.from_json(document)
    reloaded.render(Console(file=out, width=200))
    # Assert: no ceiling figure, no "nan" anywhere, the JSON figures null
    assert "CPU ceiling" not in out.getvalue() and "nan" not in out.getvalue()
    assert reloaded.to_json()["commit_ceiling_ratio"] is None
    assert "cores allow" not in reloaded.targets()[0][2]
