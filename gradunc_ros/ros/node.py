"""gradunc_node: cameras in; semantic labels, uncertainty and OoD obstacle masks out.

A managed (lifecycle) node.  configure loads the model and makes the
publishers; activate subscribes to the cameras and starts the worker;
deactivate stops them and frees cached device memory; cleanup and shutdown
release everything.  With ``autostart`` (the default) it configures and
activates itself, so ``ros2 run gradunc_ros gradunc_node`` just runs.

This module holds the lifecycle and the parameters.  The jobs live apart:
subscriptions and their QoS in ``inputs.py``; which frames run next
(``streams/scheduler.py``) and the worker thread that decodes, infers and
hands over (``streams/worker.py``); the published messages in
``publishing.py``; /diagnostics and the log summary in ``diagnostics.py``;
the obstacle clouds for planners in ``obstacles.py``; the process in
``entry.py``.  See config/gradunc.yaml for the parameters.
"""

from __future__ import annotations

import gc
import threading

import cv2
import torch
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from ..assembly import ModelRequest, assemble
from ..geometry.obstacles import ObstacleSettings
from ..models.preprocess import parse_size
from ..outputs import OUTPUTS
from ..pipeline import free_device_memory
from ..streams.cameras import Camera
from ..streams.scheduler import FrameScheduler
from ..streams.stamps import stamp_ns
from ..streams.topics import camera_info_topic, output_prefixes
from ..streams.worker import InferenceWorker, WorkerHooks
from ..thresholds import ThresholdChoice
from ..uncertainty import SETTING_FIELDS
from .diagnostics import StatusReporter
from .inputs import CameraInputs
from .obstacles import ObstacleOutputs
from .parameters import RUNTIME, RuntimeSettings, declare_all, head_settings, reliability, runtime_settings
from .publishing import (
    destroy_output_publishers,
    has_subscribers,
    make_output_publishers,
    publish_class_map,
    publish_frame,
    qos_profile,
)
from .transport import describe_transport


class StartError(RuntimeError):
    """The node could not configure or activate itself (autostart); the message says why."""


class GraduncNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("gradunc_node", **kwargs)
        # OpenCV's own warnings (e.g. for every truncated PNG) would repeat per frame; ours say it once.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        declare_all(self)
        self._settings_lock = threading.Lock()  # the worker reads settings and threshold as one pair
        self._pipeline = self._loaded = self._assembly = None
        self._cameras: list[Camera] = []
        self._scheduler: FrameScheduler | None = None
        self._inputs: CameraInputs | None = None
        self._worker: InferenceWorker | None = None
        self._status: StatusReporter | None = None
        self._obstacles: ObstacleOutputs | None = None
        self._timers: list = []
        self._latched: list = []
        self._active = False
        self._failure = ""
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self._value("autostart"):
            self.trigger_configure()
            if self._pipeline is None:
                raise StartError(self._failure or "configure failed")
            self.trigger_activate()
            if not self._active:
                raise StartError(self._failure or "activate failed")

    def _value(self, name: str):
        return self.get_parameter(name).value

    # --- lifecycle ----------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as error:  # noqa: BLE001 - any reason not to run is said, and the node stays unconfigured
            self._failure = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"cannot configure: {self._failure}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        value = self._value
        self._input_reliability = reliability("input_reliability", value("input_reliability"), allow_auto=True)
        output_qos = qos_profile(reliability("output_reliability", value("output_reliability")), 10)
        topics = [self.resolve_topic_name(topic.strip()) for topic in value("image_topics") if topic.strip()]
        if not topics:
            raise ValueError("image_topics is empty: give at least one camera topic")
        prefixes = output_prefixes(topics)  # refuses two cameras whose outputs would collide
        if value("cpu_threads"):
            torch.set_num_threads(int(value("cpu_threads")))
        request = ModelRequest(
            value("model"), value("weights"), value("model_card"), value("model_path"), value("num_classes"),
            value("backend"), value("cpu_threads"),
        )  # fmt: skip
        head = head_settings({n: value(n) for n in RUNTIME})  # checked before the model loads
        threshold, threshold_score = float(value("threshold")), str(value("threshold_score"))
        self._threshold_owner = threshold_score or head.canonical.name
        assembly = assemble(
            request, head, device=value("device"),
            input_size=parse_size(value("input_size")) if value("input_size") else None,
            fused=value("fused_head"), precision=value("precision"),
            threshold=threshold, threshold_for=self._threshold_owner,
        )  # fmt: skip
        loaded, pipeline = assembly.loaded, assembly.pipeline
        self._loaded, self._assembly = loaded, assembly
        if pipeline.settings != head:  # an ONNX graph's own score runs: the parameters say so
            self.set_parameters([Parameter(f.name, value=getattr(pipeline.settings, f.name)) for f in SETTING_FIELDS])
            self._threshold_owner = threshold_score or pipeline.settings.canonical.name
            assembly.threshold = assembly.choose_threshold(pipeline.settings, threshold, self._threshold_owner)
        if loaded.assumed:
            self.get_logger().warning(
                f"no model card says the {', '.join(loaded.assumed)}: assumed (parameter model_card, or a "
                "<weights>.card.yaml beside the weights)"
            )
        self._settings = runtime_settings({n: value(n) for n in RUNTIME}, loaded.class_names)
        self._threshold = assembly.threshold
        self._cameras = []
        for topic, prefix in zip(topics, prefixes, strict=True):
            camera = Camera(topic, topic.endswith("/compressed"), prefix, camera_info_topic(topic))
            make_output_publishers(self, camera, output_qos)
            self._cameras.append(camera)
        self._declare_class_names(loaded)
        self._scheduler = FrameScheduler(self._cameras)
        self._obstacles = self._make_obstacles(output_qos)
        self._latched = publish_class_map(self, self._cameras, loaded, with_ood=bool(value("publish_semantic")))
        self._inputs = CameraInputs(
            self, self._cameras, self._input_reliability, self._scheduler.offer, self._obstacles.depth,
            self._obstacles.on_depth,
        )  # fmt: skip
        self._status = StatusReporter(
            self, self._scheduler, self._inputs.offered, float(value("stale_after")), float(value("status_period")),
            self._obstacles.status,
        )  # fmt: skip
        self._timers = [
            self.create_timer(float(value("status_period")), self._publish_status),
            self.create_timer(float(value("log_period")), self._status.log_summary),
        ]
        self._pipeline = pipeline
        self._say_what_runs(value("precision"))

    def _make_obstacles(self, qos) -> ObstacleOutputs:
        value = self._value
        settings = ObstacleSettings(
            decimation=int(value("obstacle_decimation")), min_range=float(value("obstacle_min_range")),
            max_range=float(value("obstacle_max_range")), semantic=bool(value("publish_semantic")),
            confidence_scale=float(value("confidence_scale")), ground_plane=bool(value("ground_plane")),
            camera_height=float(value("camera_height")), camera_pitch=float(value("camera_pitch")),
            obstacle_height=float(value("obstacle_height")), ground_frame=str(value("ground_frame")).strip(),
        )  # fmt: skip
        depth_topics = [topic.strip() for topic in value("depth_topics")]
        if not any(depth_topics):
            depth_topics = []
        tolerance, wait = float(value("depth_sync_tolerance")), float(value("depth_wait"))
        return ObstacleOutputs(self, self._cameras, depth_topics, settings, tolerance, wait, qos, self._scheduler.lock)

    def _declare_class_names(self, loaded) -> None:
        if not self.has_parameter("class_names"):  # the model is start-only: the same on a second configure
            self.declare_parameter(
                "class_names",
                list(loaded.class_names),
                ParameterDescriptor(description="class id -> name", read_only=True),
            )

    def _say_what_runs(self, precision: str) -> None:
        pipeline = self._pipeline
        where = str(pipeline.device)
        if pipeline.device.type == "cpu":
            where += f" ({torch.get_num_threads()} threads)"
        computes = pipeline.head.computes(self._settings.head, pipeline.device)
        self.get_logger().info(
            f"{self._loaded.describe()} on {where}, {precision}; "
            f"score {computes}; {self._threshold.describe()}; {describe_transport()}; "
            f"input_reliability {self._input_reliability}; "
            + "; ".join(
                f"{c.topic} -> {c.prefix}/{{{','.join([*OUTPUTS, 'camera_info', *self._obstacles.topics(c)])}}}"
                + (f" (depth {self._obstacles.depth[i].topic})" if i in self._obstacles.depth else "")
                for i, c in enumerate(self._cameras)
            )
        )
        if self._threshold.warning:
            self.get_logger().warning(self._threshold.warning)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            if self._worker is not None and self._worker.alive:  # a stop that timed out: never two workers
                raise RuntimeError("the previous inference worker has not stopped (its last pass is still running)")
            self._scheduler.reopen()
            self._worker = InferenceWorker(self._scheduler, self._worker_hooks(), int(self._value("max_image_pixels")))
            self._worker.start()
            self._inputs.start()
        except Exception as error:  # noqa: BLE001
            self._failure = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"cannot activate: {self._failure}")
            self._stop_taking_frames()
            return TransitionCallbackReturn.FAILURE
        self._active = True
        return super().on_activate(state)  # activates the lifecycle publishers

    def _worker_hooks(self) -> WorkerHooks:
        lazy = bool(self._value("lazy"))
        logger = self.get_logger()
        obstacles = self._obstacles

        def listened(camera: Camera) -> bool:  # any output of the camera, the obstacle clouds included
            return has_subscribers(camera) or obstacles.has_subscribers(camera)

        return WorkerHooks(
            current=self._current,
            publish=self._publish,
            has_subscribers=listened if lazy else (lambda _camera: True),
            error=lambda text: logger.error(text, throttle_duration_sec=5.0),
            warning=logger.warning,
            shutting_down=lambda: not self.context.ok(),
        )

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_taking_frames()
        self._free_memory()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_taking_frames(self) -> None:
        """Unsubscribe, let the worker finish its pass, let waiting frames go."""
        if self._inputs is not None:
            self._inputs.stop()
        if self._worker is not None:
            if self._worker.stop(timeout=30.0):
                self._worker = None
            else:  # kept, so that activate refuses to start a second one beside it
                self.get_logger().error("the inference worker did not stop within 30 s")
        elif self._scheduler is not None:
            self._scheduler.stop()

    def _free_memory(self) -> None:
        if self._pipeline is not None:
            self._pipeline.release_buffers()
        gc.collect()
        free_device_memory()

    def _release(self) -> None:
        """Everything configure made: publishers, timers, the model and its device memory."""
        for camera in self._cameras:
            destroy_output_publishers(self, camera)
        if self._obstacles is not None:
            self._obstacles.destroy()
        for publisher in self._latched:
            self.destroy_publisher(publisher)
        for timer in self._timers:
            self.destroy_timer(timer)
        if self._status is not None:
            self._status.close()
        self._cameras, self._latched, self._timers = [], [], []
        self._scheduler = self._inputs = self._status = self._obstacles = None
        self._pipeline = self._loaded = self._assembly = None
        self._free_memory()

    def shutdown(self) -> None:
        """Stop the worker (the process is ending)."""
        self._active = False
        self._stop_taking_frames()

    # --- what the worker reads and calls ------------------------------------------------------------

    def _current(self) -> tuple:
        with self._settings_lock:
            return self._pipeline, self._settings, self._threshold

    def _publish(self, camera: Camera, header, image, prediction, settings: RuntimeSettings, threshold) -> None:
        loaded, obstacles = self._loaded, self._obstacles
        outputs = publish_frame(camera, header, image, prediction, settings, threshold, loaded)
        mask = outputs["ood_mask"][0] if "ood_mask" in outputs else None
        if obstacles is not None:  # None only after cleanup, for a worker that did not stop in time
            obstacles.publish(
                camera, header, prediction, mask, threshold.value, len(loaded.class_names), threshold.confidence_scale
            )
        now = self.get_clock().now().nanoseconds
        stamp = stamp_ns(header)
        with self._scheduler.lock:
            camera.processed += 1
            camera.latencies_ms.append((now - stamp) / 1e6)

    def _publish_status(self) -> None:
        device = str(self._pipeline.device) if self._pipeline is not None else "none"
        worker_alive = self._worker is not None and self._worker.alive
        self._status.publish(self._active, device, self._threshold.value is None, worker_alive)

    # --- parameters at run time ---------------------------------------------------------------------

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        values = {n: self._value(n) for n in RUNTIME}
        values.update({p.name: p.value for p in parameters if p.name in values})
        if not any(p.name in values for p in parameters):
            return SetParametersResult(successful=True)
        pipeline = self._pipeline
        if pipeline is None:  # unconfigured: configure reads and checks every value
            return SetParametersResult(successful=True)
        try:
            settings = runtime_settings(values, pipeline.loaded.class_names)
            pipeline.head.check_supported(settings.head)  # what this model cannot compute is refused now
            # An explicit threshold belongs to the score running when it was set, unless threshold_score says.
            owner = self._threshold_owner
            if settings.threshold_score:
                owner = settings.threshold_score
            elif any(p.name == "threshold" for p in parameters):
                owner = settings.head.canonical.name
            choice = self._assembly.choose_threshold(settings.head, settings.threshold, owner)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._announce_change(settings, choice)
        with self._settings_lock:
            self._settings, self._threshold, self._threshold_owner = settings, choice, owner
        return SetParametersResult(successful=True)

    def _announce_change(self, settings: RuntimeSettings, choice: ThresholdChoice) -> None:
        old_settings, old_choice = self._settings, self._threshold
        if settings.head != old_settings.head:
            computes = self._pipeline.head.computes(settings.head, self._pipeline.device)
            self.get_logger().info(f"score now {computes}")
        if (choice.value, choice.source) != (old_choice.value, old_choice.source):
            self.get_logger().info(choice.describe())
        if choice.warning and choice.warning != old_choice.warning:
            self.get_logger().warning(choice.warning)
