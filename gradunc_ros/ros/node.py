"""gradunc_node: cameras in; semantic labels, uncertainty and OoD obstacle masks out.

A managed (lifecycle) node.  configure loads the model and makes the
publishers; activate subscribes to the cameras and starts the worker;
deactivate stops them and frees cached device memory; cleanup and shutdown
release everything.  With ``autostart`` (the default) it configures and
activates itself, so ``ros2 run gradunc_ros gradunc_node`` just runs.

Callbacks never block: each camera keeps only its newest frame in a slot; a
worker thread decodes, runs one forward pass for the frames that are ready
(batched when they share a size), and publishes.  A frame replaced in its
slot before the worker took it is counted as dropped.  Every output carries
its input's header.  See config/gradunc.yaml for the parameters.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

from ..assembly import ModelRequest, assemble
from ..models.preprocess import parse_size
from ..outputs import OUTPUTS, render_outputs
from ..pipeline import SegmentationPipeline, free_device_memory, is_out_of_memory
from ..thresholds import ThresholdChoice
from ..uncertainty import SETTING_FIELDS
from .cameras import Camera, status_level
from .codec import ImageDecodeError, array_to_image, compressed_to_rgb, image_to_rgb
from .parameters import RUNTIME, RuntimeSettings, declare_all, head_settings, reliability, runtime_settings
from .spinning import close_ros
from .topics import camera_info_topic, output_prefixes
from .transport import describe_transport

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN}
LATCHED = QoSProfile(
    depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)  # fmt: skip


def _qos(reliability_name: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability_name == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=policy)


class StartError(RuntimeError):
    """The node could not configure or activate itself (autostart); the message says why."""


class GraduncNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("gradunc_node", **kwargs)
        # OpenCV's own warnings (e.g. for every truncated PNG) would repeat per frame; ours say it once.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        declare_all(self)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._pipeline: SegmentationPipeline | None = None
        self._cameras: list[Camera] = []
        self._subscriptions: list = []
        self._timers: list = []
        self._latched: list = []
        self._qos_timer = None
        self._diagnostics = None
        self._loaded = self._assembly = None
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
        output_qos = _qos(reliability("output_reliability", value("output_reliability")), 10)
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
        self._threshold_for = threshold_score or head.canonical.name
        assembly = assemble(
            request, head, device=value("device"),
            input_size=parse_size(value("input_size")) if value("input_size") else None,
            fused=value("fused_head"), precision=value("precision"),
            threshold=threshold, threshold_for=self._threshold_for,
        )  # fmt: skip
        loaded, pipeline = assembly.loaded, assembly.pipeline
        self._loaded, self._assembly = loaded, assembly
        if pipeline.settings != head:  # an ONNX graph's own score runs: the parameters say so
            self.set_parameters([Parameter(f.name, value=getattr(pipeline.settings, f.name)) for f in SETTING_FIELDS])
            self._threshold_for = threshold_score or pipeline.settings.canonical.name
            assembly.threshold = assembly.choose_threshold(pipeline.settings, threshold, self._threshold_for)
        if loaded.assumed:
            self.get_logger().warning(
                f"no model card says the {', '.join(loaded.assumed)}: assumed (parameter model_card, or a "
                "<weights>.card.yaml beside the weights)"
            )
        settings = runtime_settings({n: value(n) for n in RUNTIME}, loaded.class_names)
        self._settings, self._threshold = settings, assembly.threshold
        self._max_pixels = int(value("max_image_pixels"))
        self._stale_after = float(value("stale_after"))
        self._status_period = float(value("status_period"))
        self._lazy = bool(value("lazy"))
        self._cameras = []
        for topic, prefix in zip(topics, prefixes, strict=True):
            camera = Camera(topic, topic.endswith("/compressed"), prefix, camera_info_topic(topic))
            for name in OUTPUTS:
                camera.publishers[name] = self.create_lifecycle_publisher(Image, f"{prefix}/{name}", output_qos)
            camera.publishers["camera_info"] = self.create_lifecycle_publisher(
                CameraInfo, f"{prefix}/camera_info", output_qos
            )
            self._cameras.append(camera)
        self._publish_class_map(loaded)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timers = [
            self.create_timer(self._status_period, self._publish_status),
            self.create_timer(float(value("log_period")), self._log_summary),
        ]
        self._pipeline = pipeline
        self._say_what_runs(value("precision"))

    def _publish_class_map(self, loaded) -> None:
        """Class ids, names and colours, once per output prefix on a latched topic (late joiners get it),
        and as the read-only parameter class_names."""
        if not self.has_parameter("class_names"):  # the model is start-only: the same on a second configure
            self.declare_parameter(
                "class_names",
                list(loaded.class_names),
                ParameterDescriptor(description="class id -> name", read_only=True),
            )
        classes = [
            {"id": i, "name": name, "colour": list(colour)}
            for i, (name, colour) in enumerate(zip(loaded.class_names, loaded.colours, strict=True))
        ]
        text = json.dumps({"model": loaded.name, "classes": classes})
        label_info = _label_info(loaded.class_names)
        for camera in self._cameras:
            publisher = self.create_publisher(String, f"{camera.prefix}/class_map", LATCHED)
            publisher.publish(String(data=text))
            self._latched.append(publisher)
            if label_info is not None:
                publisher = self.create_publisher(type(label_info), f"{camera.prefix}/label_info", LATCHED)
                publisher.publish(label_info)
                self._latched.append(publisher)

    def _say_what_runs(self, precision: str) -> None:
        pipeline = self._pipeline
        where = str(pipeline.device)
        if pipeline.device.type == "cpu":
            where += f" ({torch.get_num_threads()} threads)"
        computes = pipeline.head.computes(self._settings.head, pipeline.device)
        self.get_logger().info(
            f"{self._loaded.describe()} on {where}, {precision}; "
            f"score {computes}; {self._threshold.describe()}; {describe_transport()}; "
            + "; ".join(f"{c.topic} -> {c.prefix}/{{{','.join(OUTPUTS)},camera_info}}" for c in self._cameras)
        )
        if self._threshold.warning:
            self.get_logger().warning(self._threshold.warning)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            for camera in self._cameras:
                self._subscribe(camera)
                self._subscriptions.append(
                    self.create_subscription(
                        CameraInfo, camera.info_topic, lambda m, c=camera: self._on_info(c, m), qos_profile_sensor_data
                    )
                )
            if self._input_reliability == "auto":
                self._qos_timer = self.create_timer(1.0, self._follow_camera_qos)
            with self._lock:
                self._stopping = False
            self._worker = threading.Thread(target=self._work, name="gradunc_inference", daemon=True)
            self._worker.start()
        except Exception as error:  # noqa: BLE001
            self._failure = f"{type(error).__name__}: {error}"
            self.get_logger().error(f"cannot activate: {self._failure}")
            self._stop_worker()
            return TransitionCallbackReturn.FAILURE
        self._active = True
        return super().on_activate(state)  # activates the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_worker()
        self._free_memory()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _offered_reliability(self, camera: Camera) -> str:
        """input_reliability auto: reliable when every publisher of the camera topic offers it (a reliable
        reader delivers large frames that best effort loses: benchmarks/camera_transport.py), else best
        effort, which matches any publisher."""
        if self._input_reliability != "auto":
            return self._input_reliability
        offered = [info.qos_profile.reliability for info in self.get_publishers_info_by_topic(camera.topic)]
        return "reliable" if offered and all(r == ReliabilityPolicy.RELIABLE for r in offered) else "best_effort"

    def _subscribe(self, camera: Camera) -> None:
        camera.reliability = self._offered_reliability(camera)
        qos = qos_profile_sensor_data if camera.reliability == "best_effort" else _qos("reliable", 5)
        kind = CompressedImage if camera.compressed else Image
        camera.subscription = self.create_subscription(
            kind, camera.topic, lambda m, c=camera: self._on_frame(c, m), qos
        )

    def _follow_camera_qos(self) -> None:
        """input_reliability auto: re-subscribe when a camera's publishers change what they offer."""
        for camera in self._cameras:
            if camera.subscription is not None and self._offered_reliability(camera) != camera.reliability:
                self.destroy_subscription(camera.subscription)
                self._subscribe(camera)
                self.get_logger().info(f"{camera.topic}: its publishers offer {camera.reliability}: subscribed so")

    def _stop_worker(self) -> None:
        """Stop taking frames: unsubscribe, let the worker finish its batch, drop waiting frames."""
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        for camera in self._cameras:
            if camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions = []
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            for camera in self._cameras:
                camera.pending = None
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    def _free_memory(self) -> None:
        if self._pipeline is not None:
            self._pipeline.release_buffers()
        gc.collect()
        free_device_memory()

    def _release(self) -> None:
        """Everything configure made: publishers, timers, the model and its device memory."""
        for camera in self._cameras:
            for publisher in camera.publishers.values():
                self.destroy_lifecycle_publisher(publisher)
        for publisher in self._latched:
            self.destroy_publisher(publisher)
        for timer in self._timers:
            self.destroy_timer(timer)
        if self._diagnostics is not None:
            self.destroy_publisher(self._diagnostics)
        self._cameras, self._latched, self._timers, self._diagnostics = [], [], [], None
        self._pipeline = self._loaded = self._assembly = None
        self._free_memory()

    def shutdown(self) -> None:
        """Stop the worker (the process is ending)."""
        self._active = False
        self._stop_worker()

    # --- callbacks: never block -------------------------------------------------------------------

    def _on_frame(self, camera: Camera, msg) -> None:
        with self._lock:
            camera.take_frame(msg)
            self._wake.notify()

    def _on_info(self, camera: Camera, msg: CameraInfo) -> None:
        camera.info = msg  # one reference swap: the worker reads whichever is newest

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
            owner = self._threshold_for
            if settings.threshold_score:
                owner = settings.threshold_score
            elif any(p.name == "threshold" for p in parameters):
                owner = settings.head.canonical.name
            choice = self._choose_threshold(settings, owner)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._announce_change(settings, choice)
        with self._lock:
            self._settings, self._threshold, self._threshold_for = settings, choice, owner
        return SetParametersResult(successful=True)

    def _choose_threshold(self, settings: RuntimeSettings, owner: str) -> ThresholdChoice:
        return self._assembly.choose_threshold(settings.head, settings.threshold, owner)

    def _announce_change(self, settings: RuntimeSettings, choice: ThresholdChoice) -> None:
        old_settings, old_choice = self._settings, self._threshold
        if settings.head != old_settings.head:
            computes = self._pipeline.head.computes(settings.head, self._pipeline.device)
            self.get_logger().info(f"score now {computes}")
        if (choice.value, choice.source) != (old_choice.value, old_choice.source):
            self.get_logger().info(choice.describe())
        if choice.warning and choice.warning != old_choice.warning:
            self.get_logger().warning(choice.warning)

    # --- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not any(c.pending is not None for c in self._cameras):
                    self._wake.wait(0.5)
                if self._stopping:
                    return
                taken = [(c, c.pending) for c in self._cameras if c.pending is not None]
                for camera, _ in taken:
                    camera.pending = None
                settings, threshold = self._settings, self._threshold
            try:
                self._process(taken, settings, threshold)
            except Exception as error:  # noqa: BLE001 - one bad batch must not stop the node
                if not self.context.ok() or self._stopping:  # shutting down: the publishers go, nothing failed
                    return
                self._fail([camera for camera, _ in taken], f"{type(error).__name__}: {error}")
            del taken

    def _wanted(self, camera: Camera) -> bool:
        """Lazy cameras: inference only while some output of this camera has a subscriber."""
        return not self._lazy or any(p.get_subscription_count() for p in camera.publishers.values())

    def _process(self, taken: list, settings: RuntimeSettings, threshold: ThresholdChoice) -> None:
        pipeline = self._pipeline
        if pipeline.settings != settings.head:
            pipeline.settings = settings.head
        by_size: dict[tuple, list] = {}
        for camera, msg in taken:
            if not self._wanted(camera):
                with self._lock:
                    camera.lazy_skipped += 1
                continue
            try:
                if camera.compressed:
                    image = compressed_to_rgb(msg, self._max_pixels)
                else:
                    image = image_to_rgb(msg, self._max_pixels)
            except ImageDecodeError as error:
                self._reject(camera, str(error))
                continue
            by_size.setdefault(image.shape, []).append((camera, msg, image))
        for group in by_size.values():
            self._infer_and_publish(group, settings, threshold)

    def _infer_and_publish(self, group: list, settings: RuntimeSettings, threshold: ThresholdChoice) -> None:
        """One forward pass for frames of one size; out of memory: frees memory, then one frame at a time."""
        try:
            predictions = self._pipeline.predict_batch([image for _, _, image in group])
            out_of_memory = False
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block: the traceback no longer holds the failed tensors
            free_device_memory()
            if len(group) > 1:
                for item in group:
                    self._infer_and_publish([item], settings, threshold)
            else:
                height, width = group[0][2].shape[:2]
                self._fail([group[0][0]], f"out of memory on a {width}x{height} frame (memory freed)")
            return
        for (camera, msg, image), prediction in zip(group, predictions, strict=True):
            self._publish(camera, msg.header, image, prediction, settings, threshold)

    def _fail(self, cameras: list[Camera], reason: str) -> None:
        with self._lock:
            for camera in cameras:
                camera.failed += 1
        topics = ", ".join(camera.topic for camera in cameras)
        self.get_logger().error(f"{topics}: frame skipped: {reason}", throttle_duration_sec=5.0)

    def _reject(self, camera: Camera, reason: str) -> None:
        with self._lock:
            first = camera.first_report(reason)
        if first:
            self.get_logger().warning(f"{camera.topic}: skipping frames: {reason}")

    def _publish(
        self, camera: Camera, header, image, prediction, settings: RuntimeSettings, threshold: ThresholdChoice
    ) -> None:
        mask = threshold.mask(settings.mask)
        outputs = render_outputs(
            image, prediction, len(self._loaded.class_names), mask, self._loaded.colours, settings.publish_overlay
        )
        for name, (array, encoding) in outputs.items():
            camera.publishers[name].publish(array_to_image(array, encoding, header))
        info = camera.info
        if info is not None:
            republished = CameraInfo(**{field: getattr(info, field) for field in info.get_fields_and_field_types()})
            republished.header = header
            camera.publishers["camera_info"].publish(republished)
        now = self.get_clock().now().nanoseconds
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        with self._lock:
            camera.processed += 1
            camera.latencies_ms.append((now - stamp) / 1e6)

    # --- status -------------------------------------------------------------------------------------

    def _publish_status(self) -> None:
        message = DiagnosticArray()
        message.header.stamp = self.get_clock().now().to_msg()
        device = str(self._pipeline.device) if self._pipeline is not None else "none"
        for camera in self._cameras:
            with self._lock:
                values = camera.status(self._status_period)
            status = DiagnosticStatus(name=f"gradunc_node: {camera.topic}", hardware_id=device)
            if not self._active:
                status.level, status.message = DiagnosticStatus.OK, "inactive (lifecycle): not subscribed"
            else:
                level, status.message = status_level(values, self._stale_after)
                status.level = LEVELS[level]
                if self._threshold.value is None:
                    status.level = DiagnosticStatus.WARN
                    status.message += "; no OoD mask: no threshold for this score"
            status.values = [KeyValue(key=k, value=f"{v:.6g}") for k, v in values.items()]
            message.status.append(status)
        self._diagnostics.publish(message)

    def _log_summary(self) -> None:
        for camera in self._cameras:
            with self._lock:
                latencies = list(camera.latencies_ms)
                counts = (camera.received, camera.processed, camera.dropped, camera.bad, camera.failed)
            p95 = f"{np.percentile(latencies, 95):.1f} ms" if latencies else "n/a"
            self.get_logger().info(
                f"{camera.topic}: received {counts[0]}, processed {counts[1]}, dropped {counts[2]}, "
                f"bad {counts[3]}, failed {counts[4]}, stamp-to-publish p95 {p95}"
            )


def _label_info(class_names: tuple[str, ...]):
    """vision_msgs/LabelInfo of the classes where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    message = LabelInfo()
    message.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)]
    return message


def run(args: list[str] | None = None, stop_requested: Callable[[], bool] = lambda: False) -> int:
    """Start, spin until SIGINT or SIGTERM, stop; exit code 1 with 'cannot start: <reason>' when it cannot.
    ``stop_requested`` says that a signal came before rclpy took the signals over (``main``)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)  # its signal handlers shut the context down, then call the entry point's
    node = executor = None
    code = 0
    try:
        node = GraduncNode()
        executor = SingleThreadedExecutor()  # our own: tearing down the global one can hang (ros/spinning.py)
        executor.add_node(node)
        if not stop_requested():
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # noqa: BLE001 - anything before spinning is a start-up fault
        if stop_requested() or not rclpy.ok():
            pass  # a signal during start-up shut the context down under it: a stop, not a fault
        elif node is not None:
            raise
        else:
            reason = str(error) if isinstance(error, StartError) else f"{type(error).__name__}: {error}"
            rclpy.logging.get_logger("gradunc_node").fatal(f"cannot start: {reason}")
            code = 1
    finally:
        if node is not None:
            node.shutdown()  # the model and the device memory go first, whatever the middleware does next
        close_ros(node, executor, "gradunc_node's ROS middleware")
    return code


if __name__ == "__main__":
    from .main import main

    raise SystemExit(main())
