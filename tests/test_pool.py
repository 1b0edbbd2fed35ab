"""afvae.pool: the runs make paper's notebooks need, trained several at once before they run."""
import ast
import os

import pytest

from afvae import baselines, beta_sweep, experiment, pipeline, pool
from afvae.checkpoint import finished, run_dir
from afvae.config import VARIANTS


def test_needed_lists_each_run_once_the_slowest_kind_first():
    cfgs = pool.needed(["00_data", "02_train", "09_comparison", "14_prior_beta"], "smoke", n_seeds=2)
    names = [run_dir(c, "").name for c in cfgs]
    assert len(names) == len(set(names))
    assert [c.name for c in cfgs[:2 * len(baselines.METHODS)]] == 2 * list(baselines.METHODS)  # the GANs: longest
    table3 = {run_dir(experiment.config("smoke", v, seed=s), "").name for v in VARIANTS for s in (0, 1)}
    sweep = {run_dir(c, "").name for c in beta_sweep.configs("smoke").values()}
    assert set(names) == set(names[:2 * len(baselines.METHODS)]) | table3 | sweep
    assert pool.needed(["00_data", "07_manipulation"], "smoke") == []  # they train nothing of their own
    assert len(pool.needed(["14_prior_beta"], "smoke", data="elsewhere")) == 0  # the sweep needs the synthetic truth


def test_the_pipeline_trains_up_front_what_the_pool_knows():
    assert pipeline.POOLED == pool.STEMS


def test_prior_beta_notebook_sweeps_the_betas_the_pool_trains():
    [nb] = pipeline.notebooks(["14_prior_beta"])
    assert "BETAS" in pipeline.declared(nb)
    betas = next(ast.literal_eval(node.value) for node in ast.parse(pipeline.parameters_source(nb)).body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "BETAS")
    assert tuple(betas) == beta_sweep.BETAS


@pytest.mark.slow
def test_train_all_trains_in_workers_skips_finished_runs_and_names_a_failure(tiny_cfg, tmp_path):
    cfgs = [tiny_cfg.replace(train={"seed": s}) for s in (0, 1)]
    trained = pool.train_all(cfgs, tmp_path / "runs", jobs=2, progress=False, scorers=False)
    assert sorted(trained) == sorted(run_dir(c, "").name for c in cfgs)
    assert all(finished(c, tmp_path / "runs") for c in cfgs)
    assert pool.train_all(cfgs, tmp_path / "runs", jobs=2, progress=False, scorers=False) == {}  # nothing left to train

    broken = tiny_cfg.replace(train={"seed": 2, "lr": 1e30})  # diverges: its worker stops at the NaN
    with pytest.raises(RuntimeError, match=f"training {run_dir(broken, '').name} failed"):
        pool.train_all([broken, tiny_cfg.replace(train={"seed": 3})], tmp_path / "runs", jobs=2, progress=False,
                       scorers=False)
    # a folder another process trains is waited for, not failed (experiment.train_cached; test_checkpoint)


def test_the_evaluation_nets_train_beside_the_runs_unless_cached(tiny_cfg, tmp_path):
    from afvae.features import landmark_net_path
    from afvae.scorer import scorer_path

    cfgs = [tiny_cfg, tiny_cfg.replace(train={"seed": 1})]  # one data config: its nets once
    paths = [landmark_net_path(tiny_cfg.data, tmp_path), scorer_path(tiny_cfg.data, tmp_path)]
    assert [name for name, _, _ in pool._scorer_tasks(cfgs, tmp_path)] == [p.name for p in paths]
    paths[0].touch()
    assert [name for name, _, _ in pool._scorer_tasks(cfgs, tmp_path)] == [paths[1].name]
    paths[1].touch()
    assert pool._scorer_tasks(cfgs, tmp_path) == []


def test_the_beta_sweeps_own_runs_train_in_the_background(monkeypatch):
    """Only notebook 14 reads the beta sweep's runs beyond Table 3's: they train while notebooks 02-13 run."""
    stems = ["02_train", "09_comparison", "14_prior_beta"]
    front, back = pipeline.pooled_runs(stems, "smoke", "synthetic", 0, 1)
    names = lambda cfgs: [run_dir(c, "").name for c in cfgs]  # noqa: E731
    assert names(front) == names(pool.needed(["02_train", "09_comparison"], "smoke"))
    assert sorted(names(front) + names(back)) == sorted(names(pool.needed(stems, "smoke")))
    assert len(back) == len(beta_sweep.configs("smoke", "synthetic", 0)) - 3  # Table 3's three trained up front
    assert pipeline.pooled_runs(stems[:2], "smoke", "synthetic", 0, 1)[1] == []

    calls = []
    monkeypatch.setattr(pool, "train_all", lambda cfgs, root, jobs, **kw: calls.append(kw) or {"a": 1.04})
    job = pipeline.Background(back, "runs", 2)
    job.start()
    assert job.wait(0.0) == {"a": 1.0} and calls == [{"progress": False, "scorers": False}]

    def fails(*a, **k):
        raise RuntimeError("training full-x failed (OSError: disk full); run again to resume it")

    monkeypatch.setattr(pool, "train_all", fails)
    job = pipeline.Background(back, "runs", 2)
    job.start()
    with pytest.raises(SystemExit, match="training full-x failed"):
        job.wait(0.0)


def test_notebooks_beside_the_background_runs_get_one_thread(monkeypatch, tmp_path):
    """While the background workers hold the cores, each notebook's kernel is started with one thread (and the
    manifest lists it); the notebook that waits for them gets the default again."""
    seen = []
    monkeypatch.setattr(pipeline, "execute",
                        lambda nb, params, *a: seen.append((nb.stem, os.environ.get("OMP_NUM_THREADS"))) or 0.0)
    monkeypatch.setattr(pipeline, "manifest", lambda *a, **k: {"wall_seconds": {}})
    monkeypatch.setattr(pipeline, "pooled_runs", lambda stems, *a: ([], ["a run"]))
    monkeypatch.setattr(pipeline, "train_up_front", lambda *a: {"seconds": 0.0, "runs": {"seconds": {}}})

    class Alive:  # background runs still training until waited for
        seconds = 0.0

        def __init__(self, *a):
            self.waited = False

        def start(self):
            pass

        def is_alive(self):
            return not self.waited

        def wait(self, t0):
            self.waited = True
            return {}

    monkeypatch.setattr(pipeline, "Background", Alive)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = pipeline.run("smoke", only=["01_focal_points", "03_ablation", "07_manipulation", "14_prior_beta"],
                          out=tmp_path)
    assert seen == [("01_focal_points", None), ("03_ablation", "1"), ("07_manipulation", "1"), ("14_prior_beta", None)]
    assert result[pipeline.SHARED_KEY] == ["03_ablation", "07_manipulation"]
    assert "OMP_NUM_THREADS" not in os.environ  # restored


def test_kernel_threads_restores_what_was_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with pipeline.kernel_threads(1):
        assert [os.environ[k] for k in pipeline.THREAD_VARS] == ["1"] * 3
    assert os.environ["OMP_NUM_THREADS"] == "4" and "MKL_NUM_THREADS" not in os.environ
    with pipeline.kernel_threads(None):
        assert os.environ["OMP_NUM_THREADS"] == "4"
