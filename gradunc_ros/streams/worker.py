"""The inference worker: one thread that takes frames from the scheduler, decodes, infers and hands over.

Per pass: the scheduler's fair choice of waiting frames; each is decoded
(undecodable ones are counted and said once per kind of reason); frames of
one size run as one batch; out of memory frees the device's cached memory
and retries one frame at a time, and a single frame that still does not fit
is counted as failed.  Any other error fails that pass's frames, never the
thread.  Plain Python (no rclpy): the node gives the callables that publish
and log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..imageio import ImageDecodeError
from ..pipeline import free_device_memory, is_out_of_memory
from .cameras import Camera
from .codec import compressed_to_rgb, image_to_rgb
from .scheduler import FrameScheduler, Taken


@dataclass
class WorkerHooks:
    """What the worker needs from its node."""

    current: Callable[[], tuple]  # (pipeline, runtime settings, threshold choice), read once per pass
    publish: Callable[..., None]  # (camera, header, image, prediction, settings, threshold)
    has_subscribers: Callable[[Camera], bool]  # False: lazy, no one listens to this camera's outputs
    error: Callable[[str], None]  # log an error (throttled by the caller)
    warning: Callable[[str], None]
    shutting_down: Callable[[], bool]  # the process is ending: errors from torn-down publishers are no fault


class InferenceWorker:
    def __init__(self, scheduler: FrameScheduler, hooks: WorkerHooks, max_pixels: int | None) -> None:
        self._scheduler = scheduler
        self._hooks = hooks
        self._max_pixels = max_pixels
        self._thread = threading.Thread(target=self._run, name="gradunc_inference", daemon=True)
        self._unfinished: list[Camera] = []  # cameras of the pass in progress whose frame is not yet handed over

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Let the current pass finish and end the thread; False when it did not end within ``timeout``."""
        self._scheduler.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self._unfinished = []
            try:
                taken = self._scheduler.take()
                if taken is None:
                    return
                self._unfinished = [item.camera for item in taken]
                if taken:
                    self.run_pass(taken)
            except Exception as error:  # noqa: BLE001 - one bad pass must not stop the node
                if self._scheduler.stopping or self._hooks.shutting_down():  # stopping: no fault, just the end
                    return
                try:  # the frames of the pass not yet handed over failed; the thread goes on
                    self._fail(self._unfinished, f"{type(error).__name__}: {error}")
                except Exception:  # noqa: BLE001, S110 - a failing log hook must not end the worker either
                    pass
                time.sleep(0.01)  # an error that repeats at once must not spin a core
            taken = None

    def run_pass(self, taken: list[Taken]) -> None:
        """Decode, infer and hand over one pass's frames."""
        pipeline, settings, threshold = self._hooks.current()
        if pipeline.settings != settings.head:
            pipeline.settings = settings.head
        by_size: dict[tuple, list] = {}
        for item in taken:
            camera = item.camera
            if not self._hooks.has_subscribers(camera):
                with self._scheduler.lock:
                    camera.lazy_skipped += 1
                self._finished(camera)
                continue
            try:
                image = self.decode(camera, item.message)
            except ImageDecodeError as error:
                self._reject(camera, str(error))
                self._finished(camera)
                continue
            by_size.setdefault(image.shape, []).append((camera, item.message, image))
        for group in by_size.values():
            self._infer_and_publish(pipeline, group, settings, threshold)

    def decode(self, camera: Camera, message) -> np.ndarray:
        if camera.compressed:
            return compressed_to_rgb(message, self._max_pixels)
        return image_to_rgb(message, self._max_pixels)

    def _infer_and_publish(self, pipeline, group: list, settings, threshold) -> None:
        """One forward pass for frames of one size; out of memory: frees memory, then one frame at a time."""
        try:
            predictions = pipeline.predict_batch([image for _, _, image in group])
            out_of_memory = False
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block: the traceback no longer holds the failed tensors
            free_device_memory()
            if len(group) > 1:
                for item in group:
                    self._infer_and_publish(pipeline, [item], settings, threshold)
            else:
                height, width = group[0][2].shape[:2]
                self._fail([group[0][0]], f"out of memory on a {width}x{height} frame (memory freed)")
                self._finished(group[0][0])
            return
        for (camera, message, image), prediction in zip(group, predictions, strict=True):
            self._hooks.publish(camera, message.header, image, prediction, settings, threshold)
            self._finished(camera)

    def _finished(self, camera: Camera) -> None:
        """The camera's frame of this pass is handed over or counted: a later error in the pass is not its."""
        if camera in self._unfinished:
            self._unfinished.remove(camera)

    def _fail(self, cameras: list[Camera], reason: str) -> None:
        with self._scheduler.lock:
            for camera in cameras:
                camera.inference_failed += 1
        if cameras:
            self._hooks.error(f"{', '.join(camera.topic for camera in cameras)}: frame skipped: {reason}")
        else:
            self._hooks.error(f"inference worker: {reason}")

    def _reject(self, camera: Camera, reason: str) -> None:
        with self._scheduler.lock:
            first = camera.first_report(reason)
        if first:
            self._hooks.warning(f"{camera.topic}: skipping frames: {reason}")
