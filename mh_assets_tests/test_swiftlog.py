"""Reading ms-swift's logging.jsonl while it is written: progress messages and the loss history."""

import json

from mh_assets.swiftlog import Progress, parse_logging


def test_progress_waits_for_a_line_cut_inside_a_character_and_skips_a_torn_one(tmp_path):
    log = tmp_path / "logging.jsonl"
    line = json.dumps({"loss": 1.5, "global_step/max_steps": "5/10", "note": "心理"}, ensure_ascii=False).encode()
    log.write_bytes(line[:-3])  # the write stopped inside 理
    progress = Progress(log)
    progress.offset = 0
    assert progress.read() == []
    with log.open("ab") as fh:
        fh.write(line[-3:] + b"\n" + b'{"loss": 2.0, "global_st' + b"\n")  # then a line torn by a crash
        fh.write(json.dumps({"loss": 1.0, "global_step/max_steps": "10/10"}).encode() + b"\n")
    messages = progress.read()
    assert [m.split(",")[0] for m in messages] == ["training step 5/10 (50%)", "training step 10/10 (100%)"]
    assert parse_logging(log).losses == [(5, 1.5), (10, 1.0)]


def test_validation_entries_are_their_own_series_and_progress_names_them(tmp_path):
    log = tmp_path / "logging.jsonl"
    progress = Progress(log)
    lines = [
        {"loss": 7.5, "global_step/max_steps": "10/40"},
        {"eval_loss": 7.4, "eval_runtime": 0.5, "global_step/max_steps": "20/40"},
        {"loss": 7.1, "global_step/max_steps": "20/40"},
        {"eval_loss": 7.0, "global_step/max_steps": "40/40"},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert progress.read()[1] == "validation at step 20/40: loss 7.4"
    parsed = parse_logging(log)
    assert parsed.losses == [(10, 7.5), (20, 7.1)] and parsed.val_losses == [(20, 7.4), (40, 7.0)]
    assert (parsed.figures()["first_val_loss"], parsed.figures()["last_val_loss"]) == (7.4, 7.0)
