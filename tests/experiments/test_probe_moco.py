import json

import pytest

from experiments import probe_moco


def test_rows_set_method_options_optimizer_and_lr(tmp_path, monkeypatch, capsys):
  seen = []

  def fake_train(config, workdir, progress):
    seen.append((config.mtl.method, dict(config.mtl.get("kwargs", {}) or {}), config.optimizer.name,
                 config.optimizer.learning_rate, config.num_steps, config.seed, workdir))
    return {"test": {"left": {"accuracy": 0.5}, "right": {"accuracy": 0.25}}}

  monkeypatch.setattr(probe_moco.loop, "train_and_evaluate", fake_train)
  monkeypatch.setattr(probe_moco, "GRID", [("moco_no_tracking", "momentum", 0.1), ("equal", "adam", 3e-3)])
  out = tmp_path / "p.json"
  probe_moco.main(["--workdir", str(tmp_path / "w"), "--json", str(out), "--seed", "2", "--steps", "7"])
  assert seen[0][:6] == ("moco", {"beta": 1.0, "beta_sigma": 0.0}, "momentum", 0.1, 7, 2)
  assert seen[1][:6] == ("equal", {}, "adam", 3e-3, 7, 2)
  rows = json.loads(out.read_text())["rows"]
  assert rows[0]["accuracy"] == {"left": 0.5, "right": 0.25}
  assert "moco_no_tracking" in capsys.readouterr().out


def test_preempted_run_is_an_error(tmp_path, monkeypatch):
  monkeypatch.setattr(probe_moco.loop, "train_and_evaluate", lambda c, w, progress: {"preempted": True, "step": 3})
  with pytest.raises(RuntimeError, match="stopped early"):
    probe_moco.run_one("moco", "adam", 1e-3, 0, 5, str(tmp_path))


def test_bad_steps():
  with pytest.raises(ValueError, match="--steps"):
    probe_moco.main(["--workdir", "/tmp/x", "--steps", "0"])
