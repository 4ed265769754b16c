"""Planning: which views are targets and which reference each uses; the serial engine resumes."""

import logging

import numpy as np
import pytest

from lfrefsr.axes import Kind
from lfrefsr.errors import InputError
from lfrefsr.io.store import Store
from lfrefsr.modes import ReferenceMode
from lfrefsr.pipeline import plan, run_serial


def _store(tmp_path, kind, view_shape, hr_known=None, ref=(0, 0)):
    hr_known = np.ones(view_shape, bool) if hr_known is None else hr_known
    store = Store.create(tmp_path / "s.zarr", kind=kind, view_shape=view_shape, shape_hr=(16, 16), scale=4,
                         dtype=np.uint8, ref=None if kind == Kind.VIDEO else ref, hr_known=hr_known, source="t")
    rng = np.random.default_rng(0)
    for index in store.views():
        store.write("lr", index, rng.integers(0, 255, (3, 4, 4), dtype=np.uint8))
        if hr_known[index]:
            store.write("hr", index, rng.integers(0, 255, (3, 16, 16), dtype=np.uint8))
    return store


def test_light_field_targets_every_view_but_the_reference(tmp_path):
    tasks = plan(_store(tmp_path, Kind.LF, (3, 4)), ref=(1, 2))
    assert len(tasks) == 11 and all(t.reference == (1, 2) for t in tasks)
    assert (1, 2) not in [t.target for t in tasks]
    assert tasks[0].hint.grid_offset == (-1, -2)


def test_light_field_video_uses_each_steps_reference(tmp_path):
    tasks = plan(_store(tmp_path, Kind.LFVIDEO, (3, 2, 2)))
    assert len(tasks) == 9
    assert all(t.reference == (t.target[0], 0, 0) for t in tasks)


def test_video_previous_and_keyframe_references(tmp_path):
    store = _store(tmp_path, Kind.VIDEO, (5,), hr_known=np.array([1, 0, 0, 1, 0], bool))
    with pytest.raises(InputError, match="--reference keyframe"):
        plan(store)
    tasks = plan(store, reference_mode=ReferenceMode.KEYFRAME)
    assert [(t.target[0], t.reference[0]) for t in tasks] == [(1, 0), (2, 0), (4, 3)]


def test_keyframes_mode_takes_the_keyframes_on_both_sides_and_warns_once_at_the_end(tmp_path, caplog):
    store = _store(tmp_path, Kind.VIDEO, (6,), hr_known=np.array([1, 0, 0, 1, 0, 0], bool))
    with caplog.at_level(logging.WARNING, logger="lfrefsr"):
        tasks = plan(store, reference_mode=ReferenceMode.KEYFRAMES)
    found = [(t.target[0], t.reference[0], t.next_reference and t.next_reference[0]) for t in tasks]
    assert found == [(1, 0, 3), (2, 0, 3), (4, 3, None), (5, 3, None)]
    assert [(t.hint.frame_offset, t.next_hint.frame_offset) for t in tasks[:2]] == [(1, -2), (2, -1)]
    (warning,) = [r.getMessage() for r in caplog.records if "no HR keyframe after" in r.getMessage()]
    assert "after keyframe 3: frames 4-5 use it alone" in warning


def test_keyframes_mode_counts_only_every_kth_frame_when_asked(tmp_path):
    store = _store(tmp_path, Kind.VIDEO, (7,))  # HR everywhere, as evaluation stores are
    tasks = plan(store, reference_mode=ReferenceMode.KEYFRAMES, keyframe_every=3)
    found = [(t.target[0], t.reference[0], t.next_reference[0]) for t in tasks]
    assert found == [(1, 0, 3), (2, 0, 3), (4, 3, 6), (5, 3, 6)]


def test_keyframes_mode_is_refused_for_a_light_field(tmp_path):
    with pytest.raises(InputError, match="for a video"):
        plan(_store(tmp_path, Kind.LF, (2, 2)), reference_mode=ReferenceMode.KEYFRAMES)


def test_keyframes_mode_runs_and_resumes_in_process(tmp_path):
    store = _store(tmp_path, Kind.VIDEO, (5,), hr_known=np.array([1, 0, 0, 1, 0], bool))
    tasks = plan(store, reference_mode=ReferenceMode.KEYFRAMES)
    assert run_serial(tasks, "flowwarp", progress=False).done == 3
    assert run_serial(tasks, "flowwarp", progress=False).skipped == 3


def test_serial_run_resumes_and_overwrites(tmp_path):
    store = _store(tmp_path, Kind.LF, (2, 2))
    tasks = plan(store)
    first = run_serial(tasks, "bicubic", progress=False)
    assert (first.done, first.skipped) == (3, 0)
    again = run_serial(tasks, "bicubic", progress=False)
    assert (again.done, again.skipped) == (0, 3)
    forced = run_serial(tasks, "bicubic", progress=False, overwrite=True)
    assert forced.done == 3
    assert store.done("bicubic").sum() == 3 and not store.done("bicubic")[0, 0]


def test_a_view_that_fails_is_named_and_the_run_goes_on(tmp_path, monkeypatch):
    """Any error in one view, not only lfrefsr's own: in-process as on a cluster, the view is named with its reason
    (``pipeline.failure``) and the others are done and marked."""
    from lfrefsr import pipeline

    store = _store(tmp_path, Kind.LF, (2, 2))
    real = pipeline.execute

    def flaky(task, *args, **kwargs):
        if task.target == (1, 1):
            raise RuntimeError("out of luck")
        return real(task, *args, **kwargs)

    monkeypatch.setattr(pipeline, "execute", flaky)
    summary = run_serial(plan(store), "bicubic", progress=False)
    assert summary.done == 2 and summary.failed == [(plan(store)[-1].label, "RuntimeError: out of luck")]
    assert store.done("bicubic").sum() == 2 and not store.done("bicubic")[1, 1]
    assert pipeline.failure(InputError("bad view")) == "bad view"


def test_light_field_views_reach_the_method_whichever_views_run(tmp_path, monkeypatch):
    """A method that uses a light field's views gets all of them (not only those this run writes), each with its grid
    offset, for each time step of a light-field video; results do not depend on which views a run covers."""
    from lfrefsr import pipeline
    from lfrefsr.methods.bicubic import Bicubic

    seen = []

    class Spy(Bicubic):
        uses_views = True

        def prepare(self, ref, views=None):
            seen.append(sorted(hint.grid_offset for hint, _ in views))
            return super().prepare(ref)

    spy = Spy(scale=4)
    monkeypatch.setattr(pipeline, "cached_method", lambda *args: spy)
    store = _store(tmp_path, Kind.LFVIDEO, (2, 2, 3), ref=(1, 1))
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1)]
    monkeypatch.setattr(pipeline, "_CACHE", {"methods": {}, "references": pipeline.OrderedDict()})
    run_serial(plan(store, views=[(1, 0, 2)]), "bicubic", progress=False)
    assert seen == [offsets]
    monkeypatch.setattr(pipeline, "_CACHE", {"methods": {}, "references": pipeline.OrderedDict()})
    run_serial(plan(store), "bicubic", progress=False, overwrite=True)
    assert seen == [offsets, offsets, offsets]  # time steps 0 and 1, one preparation each
