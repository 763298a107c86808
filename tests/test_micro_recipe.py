"""The micro cascade's recipe (show1_cli/training/micro.py): its scaffold and the order of its runs."""

from __future__ import annotations

from pathlib import Path

from transformers import T5Tokenizer

from show1_cli.training.micro import LANES, RECIPES, SHIPPED, caption_corpus, train_command, write_scaffold


def test_the_scaffold_t5_tokenizer_reads_every_caption_word_as_one_piece(tmp_path: Path):
    write_scaffold(tmp_path)
    tokenizer = T5Tokenizer.from_pretrained(tmp_path / "show-1-base" / "tokenizer")
    for caption in caption_corpus():
        pieces = tokenizer.tokenize(caption)
        assert [piece.lstrip("\u2581") for piece in pieces] == caption.split(), caption
    assert tokenizer.unk_token_id not in tokenizer("a red circle moving right on a black background").input_ids


def test_every_run_starts_from_the_scaffold_or_a_run_before_it_in_its_lane(tmp_path: Path):
    assert sorted(run for lane in LANES for run in lane) == sorted(RECIPES)
    assert set(SHIPPED) <= set(RECIPES)
    for lane in LANES:
        for position, run in enumerate(lane):
            source = RECIPES[run].init
            assert source.startswith("scaffold/") or source.removeprefix("trained/") in lane[:position], (run, source)
            command = train_command(run, tmp_path)
            assert command[command.index("--init") + 1] == str(tmp_path / source)
            assert ("--config" in command) == (RECIPES[run].config is not None)
            if "--config" in command:  # recorded in the output's provenance: no trace of where the clone lives
                config = Path(command[command.index("--config") + 1])
                assert not config.is_absolute() and config.is_file()
