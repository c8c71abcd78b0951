"""JepaSFTTrainer on two CPU processes (gloo, torchrun) against one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("trl", reason="TRL is not installed (pip install 'llm-jepa[trl]')")

from safetensors.torch import load_file  # noqa: E402

from tests.test_distributed import REPO, _free_port  # noqa: E402

pytestmark = pytest.mark.distributed


def _run(out, nproc, per_device):
    worker = os.path.join(REPO, "tests", "_trl_worker.py")
    launch = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "src"), REPO])}
    proc = subprocess.run([*launch, worker, str(out), str(per_device)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "losses.json").read_text())


def test_two_processes_give_the_loss_and_step_of_one_process_on_the_whole_batch(tmp_path):
    one, two = _run(tmp_path / "one", 1, 4), _run(tmp_path / "two", 2, 2)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "lm_loss", "jepa_loss", "stp_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    wa, wb = (load_file(d / "model.safetensors") for d in (tmp_path / "one", tmp_path / "two"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=k)
    assert (tmp_path / "two" / "llm_jepa_config.yaml").is_file()
