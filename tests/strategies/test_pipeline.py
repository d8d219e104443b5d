"""Tests of `strategies.pipeline.GradientPipeline` on small hand-made (n, d) matrices."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tensorflow as tf

from strategies import GradientPipeline

# How a pipeline is run: eagerly, in a tf.function, and compiled with XLA.
MODES = ("eager", "function", "xla")


def runner(pipeline: GradientPipeline, mode: str):
  """Returns a callable that feeds one (n, d) matrix to `pipeline` in the given mode."""
  if mode == "eager":
    call = pipeline
  else:
    call = tf.function(pipeline.__call__, jit_compile=(mode == "xla"))
  return lambda rows, dtype=tf.float64: call(tf.constant(rows, dtype)).numpy()


def study(pipeline: GradientPipeline) -> dict[str, float]:
  return {name: float(value.numpy()) for name, value in pipeline.study.values.items()}


# Plain aggregation

@pytest.mark.parametrize("mode", MODES)
def test_average_without_attack_is_the_mean(mode):
  run = runner(GradientPipeline("average", 3), mode)
  np.testing.assert_allclose(run([[1., 2.], [3., 4.], [5., 6.]]), [3., 4.])
  np.testing.assert_allclose(run([[0., 0.], [0., 3.], [6., 0.]]), [2., 1.])


@pytest.mark.parametrize("mode", MODES)
def test_krum_selection(mode):
  # n = 5, f = 1: scores sum the 2 smallest squared distances to the others.
  #   0: 4, 9, 16, 400 -> 13   2: 4, 1, 4, 324 -> 5   3: 9, 1, 1, 289 -> 2   4: 16, 4, 1, 256 -> 5
  #   20: 400, 324, 289, 256 -> 545: the row holding 3 wins.
  pipeline = GradientPipeline("krum", 5, 1)
  run = runner(pipeline, mode)
  np.testing.assert_array_equal(run([[0.], [2.], [3.], [4.], [20.]], tf.float32), [3.])
  np.testing.assert_array_equal(pipeline.study.selected.numpy(), [0, 0, 1, 0, 0])
  assert pipeline.study.step.numpy() == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m, expected, kept", [(2, 1., 2), (5, .8, 5)])
def test_chain_with_stage_arguments(mode, m, expected, kept):
  # Clipped at norm 1, the rows are 0, 1, 1, 1, 1; multi-krum (n=5, f=1) ranks the four 1s first.
  pipeline = GradientPipeline("clipping>multi-krum", 5, 1, aggregator_args={"threshold": 1.0, "multi-krum.m": m})
  np.testing.assert_allclose(runner(pipeline, mode)([[0.], [2.], [3.], [4.], [20.]]), [expected])
  assert pipeline.study.selected.numpy().sum() == kept


def test_searching_attack_defaults_to_the_rule_arguments():
  pipeline = GradientPipeline("multi-krum", 7, 1, 1, "optimal-little", aggregator_args={"m": 3})
  assert pipeline.attack_args["gar_args"] == {"m": 3}
  given = GradientPipeline("multi-krum", 7, 1, 1, "optimal-little", aggregator_args={"m": 3},
                           attack_args={"gar_args": {"m": 2}})
  assert given.attack_args["gar_args"] == {"m": 2}


# Simulated attack: the last f_real rows are replaced

@pytest.mark.parametrize("mode", MODES)
def test_constant_attack_replaces_the_last_rows(mode):
  # The Byzantine worker's own row (100, 100) is never seen: the rule averages (1, 2), (3, 4), (5, 6), (7, 7).
  pipeline = GradientPipeline("average", 4, 1, 1, "constant", attack_args={"value": 7.0}, study_period=1)
  out = runner(pipeline, mode)([[1., 2.], [3., 4.], [5., 6.], [100., 100.]])
  np.testing.assert_allclose(out, [16 / 4, 19 / 4])
  values = study(pipeline)
  assert values["attack/norm"] == pytest.approx(7 * math.sqrt(2))
  assert values["attack/max-coordinate"] == 7.0
  assert values["attack/variance"] == 0.0
  # Honest mean (3, 4): cosine with (7, 7) is 49 / (5 * 7 sqrt(2)).
  assert values["cosine/honest-attack"] == pytest.approx(49 / (35 * math.sqrt(2)))
  assert values["sampled/max-coordinate"] == 6.0  # the honest rows only, not the Byzantine one's 100


@pytest.mark.parametrize("mode", MODES)
def test_nan_attack_reaches_the_rule(mode):
  # Without an attack the median of 1, 3, -1000 is 1; NaN sorts past every finite value: median(1, 3, NaN) = 3.
  honest_only = GradientPipeline("median", 3, 1, 1)
  np.testing.assert_array_equal(runner(honest_only, mode)([[1.], [3.], [-1000.]]), [1.])
  attacked = GradientPipeline("median", 3, 1, 1, "nan")
  np.testing.assert_array_equal(runner(attacked, mode)([[1.], [3.], [-1000.]]), [3.])
  averaged = GradientPipeline("average", 3, 1, 1, "nan")
  assert np.isnan(runner(averaged, mode)([[1.], [3.], [-1000.]])).all()


def test_krum_never_selects_the_reversed_worker():
  pipeline = GradientPipeline("krum", 5, 1, 1, "reverse")
  out = pipeline(tf.constant([[1., 0.], [1.1, 0.], [0.9, 0.], [1., 0.1], [1., 0.]], tf.float64))
  assert out.numpy()[0] > 0  # an honest row, not -100 * the honest mean
  assert pipeline.study.selected.numpy()[4] == 0


# Clipping

@pytest.mark.parametrize("mode", MODES)
def test_clip_hand_computed(mode):
  # Norms 5, 0.5, 10 with clip 1: (3, 4) -> (.6, .8), (0, .5) unchanged, (6, 8) -> (.6, .8).
  pipeline = GradientPipeline("average", 3, clip=1.0, study_period=1)
  out = runner(pipeline, mode)([[3., 4.], [0., .5], [6., 8.]])
  np.testing.assert_allclose(out, [1.2 / 3, 2.1 / 3])
  values = study(pipeline)
  assert values["sampled/norm"] == pytest.approx((5 + .5 + 10) / 3)  # before clipping
  assert values["honest/norm"] == pytest.approx((1 + .5 + 1) / 3)  # what the workers sent
  assert values["honest/max-coordinate"] == pytest.approx(.8)


def test_clip_applies_before_the_attack():
  # The attack sees the clipped honest rows: reverse with factor 1 sends -mean((.6, .8), (0, .5)).
  pipeline = GradientPipeline("average", 3, 0, 1, "reverse", attack_args={"factor": 1.0}, clip=1.0)
  out = pipeline(tf.constant([[3., 4.], [0., .5], [60., 80.]], tf.float64)).numpy()
  honest_mean = np.array([.3, .65])
  np.testing.assert_allclose(out, (2 * honest_mean - honest_mean) / 3)


# Momentum: m <- beta * m + (1 - dampening) * g

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dampening, expected", [(0.0, [2., 7., 3.5]), (0.5, [1., 3.5, 1.75])])
def test_momentum_at_update(mode, dampening, expected):
  # Aggregates 2, 6, 0 with beta = .5: m = 2, .5 * 2 + 6 = 7, .5 * 7 = 3.5; with dampening .5 the new
  # gradient counts half: m = 1, .5 * 1 + 3 = 3.5, 1.75.
  pipeline = GradientPipeline("average", 2, momentum=0.5, momentum_at="update", dampening=dampening)
  run = runner(pipeline, mode)
  outs = [run(rows)[0] for rows in ([[1.], [3.]], [[5.], [7.]], [[0.], [0.]])]
  np.testing.assert_allclose(outs, expected)


@pytest.mark.parametrize("mode", MODES)
def test_momentum_at_worker_attack_sees_honest_momentums(mode):
  # beta = .5, reverse with factor 1 sends -mean(honest momentums).
  #   step 1: momentums 2, 4 -> attack -3 -> average (2 + 4 - 3) / 3 = 1
  #   step 2: gradients 6, 8 -> momentums 7, 10 -> attack -8.5 -> (7 + 10 - 8.5) / 3
  # (an attack built from the raw gradients 6, 8 would give (7 + 10 - 7) / 3 instead)
  pipeline = GradientPipeline("average", 3, 1, 1, "reverse", attack_args={"factor": 1.0}, momentum=0.5,
                              momentum_at="worker", study_period=1)
  run = runner(pipeline, mode)
  np.testing.assert_allclose(run([[2.], [4.], [99.]]), [1.])
  np.testing.assert_allclose(run([[6.], [8.], [99.]]), [8.5 / 3])
  values = study(pipeline)
  assert values["sampled/norm"] == pytest.approx(7.)  # the raw honest gradients 6, 8
  assert values["honest/norm"] == pytest.approx(8.5)  # the honest momentums 7, 10
  assert values["attack/norm"] == pytest.approx(8.5)


@pytest.mark.parametrize("mode", MODES)
def test_momentum_at_server_accumulates_byzantine_rows_too(mode):
  # beta = .5, constant attack 10; the server keeps one momentum per worker, Byzantine ones included.
  #   step 1: received 2, 4, 10 -> 16 / 3
  #   step 2: submitted 6, 8, 10 -> momentums 7, 10, 15 -> 32 / 3 (not (7 + 10 + 10) / 3)
  pipeline = GradientPipeline("average", 3, 1, 1, "constant", attack_args={"value": 10.0}, momentum=0.5,
                              momentum_at="server")
  run = runner(pipeline, mode)
  np.testing.assert_allclose(run([[2.], [4.], [99.]]), [16 / 3])
  np.testing.assert_allclose(run([[6.], [8.], [99.]]), [32 / 3])


def test_momentum_at_server_with_median():
  # Step 1 momentums 1, 2, 100 then 3, 2, 100 (+ .5 * previous): .5 + 3 = 3.5, 1 + 2 = 3, 50 + 100 = 150.
  pipeline = GradientPipeline("median", 3, 1, 1, "constant", attack_args={"value": 100.0}, momentum=0.5,
                              momentum_at="server")
  np.testing.assert_allclose(pipeline(tf.constant([[1.], [2.], [0.]], tf.float64)).numpy(), [2.])
  np.testing.assert_allclose(pipeline(tf.constant([[3.], [2.], [0.]], tf.float64)).numpy(), [3.5])


# Validation

@pytest.mark.parametrize("kwargs, message", [
    (dict(momentum=.9, momentum_at="client"), "expected momentum_at in update, worker, server, got 'client'"),
    (dict(momentum=1.0), "expected 0 <= momentum < 1, got momentum=1.0"),
    (dict(momentum=-.1), "expected 0 <= momentum < 1, got momentum=-0.1"),
    (dict(momentum=float("nan")), "expected 0 <= momentum < 1"),
    (dict(dampening=1.0), "expected 0 <= dampening < 1, got dampening=1.0"),
    (dict(clip=0.0), "expected a gradient clipping norm > 0 (or None), got clip=0.0"),
    (dict(clip=-1.0), "expected a gradient clipping norm > 0 (or None), got clip=-1.0"),
    (dict(clip=float("nan")), "expected a gradient clipping norm > 0"),
    (dict(study_period=-1), "expected study_period >= 0 as an int, got -1"),
    (dict(attack_args={"value": 1.0}), "attack arguments ['value'] given without an attack"),
])
def test_bad_options(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    GradientPipeline("average", 4, 1, 1, **kwargs)


def test_bad_worker_counts():
  with pytest.raises(ValueError, match=re.escape("at least one worker must be honest: got nb_real_byz_workers=4 "
                                                 ">= nb_workers=4")):
    GradientPipeline("average", 4, 1, 4, "nan")
  with pytest.raises(ValueError, match=re.escape("expected nb_workers >= 1 as an int, got 0")):
    GradientPipeline("average", 0)
  with pytest.raises(ValueError, match=re.escape("expected nb_real_byz_workers >= 0 as an int, got -1")):
    GradientPipeline("average", 4, 0, -1)
  with pytest.raises(ValueError, match=re.escape("expected nb_workers >= 1 as an int, got True")):
    GradientPipeline("average", True)


def test_rule_and_attack_checks():
  with pytest.raises(ValueError, match=re.escape("krum needs n >= 2f+3, got n=5, f=2")):
    GradientPipeline("krum", 5, 2)
  with pytest.raises(ValueError, match="unknown"):
    GradientPipeline("no-such-rule", 5, 1)
  with pytest.raises(ValueError, match="unknown"):
    GradientPipeline("average", 5, 1, 1, "no-such-attack")
  with pytest.raises(ValueError, match=re.escape("attack constant got unknown argument(s) factor")):
    GradientPipeline("average", 5, 1, 1, "constant", attack_args={"factor": 2.0})
  with pytest.raises(ValueError, match=re.escape("attack reverse needs factor > 0")):
    GradientPipeline("average", 5, 1, 1, "reverse", attack_args={"factor": -1.0})


def test_bad_gradient_shapes():
  pipeline = GradientPipeline("average", 3)
  with pytest.raises(ValueError, match=re.escape("expected gradients from 3 workers, got 2")):
    pipeline(tf.zeros([2, 4]))
  pipeline(tf.zeros([3, 4]))
  with pytest.raises(ValueError, match=re.escape("aggregates gradients of 4 coordinates, got 5")):
    pipeline(tf.zeros([3, 5]))



@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs, scaled_after", [
    ({"aggregator": "krum", "nb_decl_byz_workers": 1}, True),
    ({"aggregator": "multi-krum", "nb_decl_byz_workers": 1, "momentum": 0.9}, True),
    ({"aggregator": "median", "nb_decl_byz_workers": 1, "nb_real_byz_workers": 1}, True),
    ({"aggregator": "median", "nb_decl_byz_workers": 1, "clip": 2.}, False),
    ({"aggregator": "median", "nb_decl_byz_workers": 1, "nb_real_byz_workers": 1, "attack": "little"}, False),
    ({"aggregator": "krum", "nb_decl_byz_workers": 1, "momentum": 0.9, "momentum_at": "worker"}, False),
    ({"aggregator": "centered-clipping", "nb_decl_byz_workers": 1}, False),
])
def test_a_scale_is_the_same_as_scaled_rows(mode, kwargs, scaled_after):
  # A strategy hands the rows 1/n of what the workers mean (their loss was scaled): the pipeline scales
  # the rule's output instead where that is the same, and the study records the scaled rows either way.
  rows = np.random.default_rng(5).normal(size=(5, 3))
  by_scale, scaled_rows = (GradientPipeline(nb_workers=5, study_period=1, **kwargs) for _ in range(2))
  call = by_scale if mode == "eager" else tf.function(by_scale.__call__, jit_compile=(mode == "xla"))
  assert by_scale._scale_commutes(None) == scaled_after
  for step in range(3):
    got = call(tf.constant(rows * (step + 1)), scale=4)
    expected = scaled_rows(tf.constant(rows * (step + 1) * 4))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12)
  expected_study = study(scaled_rows)
  for name, value in study(by_scale).items():
    assert value == pytest.approx(expected_study[name], rel=1e-12, nan_ok=True), name
  np.testing.assert_array_equal(by_scale.study.selection_counts.numpy(), scaled_rows.study.selection_counts.numpy())


# Study metrics

def test_study_metrics_hand_computed():
  # Rows (1, 0), (0, 1), (1, 1): mean (2/3, 2/3); squared distances to it 5/9, 5/9, 2/9.
  pipeline = GradientPipeline("average", 3, study_period=1)
  pipeline(tf.constant([[1., 0.], [0., 1.], [1., 1.]], tf.float64))
  values = study(pipeline)
  assert "attack/norm" not in values and "cosine/honest-attack" not in values
  expected = {
      "sampled/norm": (2 + math.sqrt(2)) / 3, "sampled/variance": 4 / 9, "sampled/max-coordinate": 1.0,
      "honest/norm": (2 + math.sqrt(2)) / 3, "honest/variance": 4 / 9, "honest/max-coordinate": 1.0,
      "defense/norm": 2 * math.sqrt(2) / 3, "defense/max-coordinate": 2 / 3, "defense/deviation": 0.0,
      "cosine/honest-defense": 1.0, "cosine/sampled-honest": 1.0,
      # Pairwise cosines 0, 1/sqrt(2), 1/sqrt(2).
      "cosine/honest-pairwise": math.sqrt(2) / 3,
      # (12/9) / (3 - 1) over the squared norm 8/9 of the mean.
      "honest/variance-norm-ratio": 3 / 4,
  }
  assert sorted(values) == sorted(expected)
  for name, value in expected.items():
    assert values[name] == pytest.approx(value, abs=1e-12), name


def test_study_defense_deviation_under_krum():
  # Krum keeps (3,) while the honest mean of 0, 2, 3, 4, 20 is 5.8: deviation 2.8, cosine 1.
  pipeline = GradientPipeline("krum", 5, 1, study_period=1)
  pipeline(tf.constant([[0.], [2.], [3.], [4.], [20.]], tf.float64))
  values = study(pipeline)
  assert values["defense/deviation"] == pytest.approx(2.8)
  assert values["defense/norm"] == pytest.approx(3.0)
  assert values["sampled/max-coordinate"] == 20.0


@pytest.mark.parametrize("mode", ("eager", "function"))
def test_study_period(mode):
  pipeline = GradientPipeline("average", 2, study_period=2)
  run = runner(pipeline, mode)
  run([[1.], [3.]])
  assert pipeline.study.recorded_step.numpy() == -1
  assert all(math.isnan(value) for value in study(pipeline).values())
  run([[5.], [7.]])
  assert pipeline.study.recorded_step.numpy() == 2
  assert study(pipeline)["defense/norm"] == 6.0
  run([[0.], [2.]])  # step 3: not recorded, the step-2 values stay
  assert pipeline.study.step.numpy() == 3 and pipeline.study.recorded_step.numpy() == 2
  assert study(pipeline)["defense/norm"] == 6.0


def test_no_study_period_counts_steps_only():
  pipeline = GradientPipeline("average", 2)
  pipeline(tf.constant([[1.], [3.]]))
  pipeline(tf.constant([[1.], [3.]]))
  assert pipeline.study.step.numpy() == 2
  assert pipeline.study.recorded_step.numpy() == -1


@pytest.mark.parametrize("mode", MODES)
def test_selection_counts_and_rates(mode):
  # Step 1 keeps row 2 (value 3), step 2 keeps row 1 (value 3 again), step 3 row 1 again.
  pipeline = GradientPipeline("krum", 5, 1, study_period=1)
  run = runner(pipeline, mode)
  run([[0.], [2.], [3.], [4.], [20.]])
  run([[0.], [3.], [2.], [4.], [20.]])
  run([[0.], [3.], [2.], [4.], [20.]])
  np.testing.assert_array_equal(pipeline.study.selection_counts.numpy(), [0, 2, 1, 0, 0])
  np.testing.assert_array_equal(pipeline.study.selected.numpy(), [0, 1, 0, 0, 0])
  np.testing.assert_allclose(pipeline.study.selection_rates().numpy(), [0, 2 / 3, 1 / 3, 0, 0])


def test_average_records_no_selection():
  pipeline = GradientPipeline("average", 3, study_period=1)
  pipeline(tf.constant([[1.], [2.], [3.]]))
  np.testing.assert_array_equal(pipeline.study.selection_counts.numpy(), [0, 0, 0])
  assert pipeline.study.step.numpy() == 1


def test_variables_hold_the_rule_state():
  pipeline = GradientPipeline("centered-clipping", 3, 1)
  pipeline.build(4)
  assert pipeline.variables()["rule_center"].shape == (4,)
  stateless = GradientPipeline("krum", 5, 1)
  stateless.build(4)
  assert not [name for name in stateless.variables() if name.startswith("rule_")]


@pytest.mark.parametrize("mode", ("eager", "function"))
def test_compressed_rows_reach_the_rule_and_the_residuals_persist(mode):
  from aggregathor import compression  # pylint: disable=import-outside-toplevel
  pipeline = GradientPipeline("average", 3, study_period=1)
  pipeline.compress_with(compression.get("topk", 4, ratio=0.25))  # each worker sends its largest coordinate
  run = runner(pipeline, mode)
  rows = np.array([[4.0, 1, 0, 0], [0, -2, 1.5, 0], [0, 0, 0, 3]])
  np.testing.assert_allclose(run(rows, tf.float32), [4 / 3, -2 / 3, 0, 1])
  residual = pipeline.variables()["compression_residual"].numpy()
  np.testing.assert_allclose(residual, [[0, 1, 0, 0], [0, 0, 1.5, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(run(np.zeros((3, 4)), tf.float32), [0, 1 / 3, 0.5, 0])  # the residuals, sent next
  assert study(pipeline)["compression/bytes-per-worker"] == 8.0


def test_the_attack_sees_the_compressed_rows_and_is_compressed_too():
  from aggregathor import compression  # pylint: disable=import-outside-toplevel
  pipeline = GradientPipeline("average", 3, 0, 1, "empire", attack_args={"factor": 2.0})
  pipeline.compress_with(compression.get("topk", 4, ratio=0.25, error_feedback=False))
  rows = np.array([[4.0, 1, 0, 0], [2.0, 3, 0, 0], [9.0, 9, 9, 9]])
  # Honest rows sent: [4,0,0,0] and [0,3,0,0]; mean [2,1.5,0,0]; empire -2·mean = [-4,-3,0,0], sent as [-4,0,0,0].
  np.testing.assert_allclose(pipeline(tf.constant(rows, tf.float32)).numpy(), [0, 1, 0, 0], atol=1e-6)


def test_compress_with_comes_before_the_state_is_built():
  from aggregathor import compression  # pylint: disable=import-outside-toplevel
  pipeline = GradientPipeline("average", 2)
  pipeline.build(4)
  with pytest.raises(ValueError, match="before the pipeline is built"):
    pipeline.compress_with(compression.get("topk", 4))
