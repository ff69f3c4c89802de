from glob import glob

from setuptools import find_packages, setup

package_name = "gradunc_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/weights", glob("gradunc_ros/weights/*")),
    ],
    # ROS installs resolve dependencies through package.xml (rosdep); pip users get them here.
    install_requires=[
        "setuptools",
        "numpy",
        "torch",
        "PyYAML",
        "safetensors",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",
        "rosbags",
    ],
    # setuptools >= 72 ignores tests_require: colcon test finds pytest through this extra.
    extras_require={
        "test": ["pytest<9"],
        # gradunc-export --onnx and the backends onnxruntime and openvino (node parameter backend, --backend).
        "onnx": ["onnx", "onnxruntime", "openvino"],
        # Models brought by the user from Hugging Face (the tests build a SegFormer from a config).
        "transformers": ["transformers"],
        # gradunc-bag evaluate --engine ray: a fleet's bags on a Ray cluster (or a Ray started for the run).
        "ray": ["ray>=2.9"],
    },
    # The shipped default model travels inside the package, so pip installs have it too.
    package_data={package_name: ["weights/*.safetensors", "weights/*.yaml", "weights/*.md"]},
    zip_safe=False,
    maintainer="gradunc_ros maintainers",
    maintainer_email="gradunc-ros@example.com",
    description="Pixel-wise gradient uncertainty for out-of-distribution segmentation on ROS 2 cameras",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gradunc_node = gradunc_ros.ros.main:main",
            "gradunc-selfcheck = gradunc_ros.tools.selfcheck:main",
            "gradunc-infer = gradunc_ros.tools.infer:main",
            "gradunc-train = gradunc_ros.tools.train:main",
            "gradunc-export = gradunc_ros.tools.export:main",
            "gradunc-eval = gradunc_ros.tools.evaluate:main",
            "gradunc-calibrate = gradunc_ros.tools.calibrate:main",
            "gradunc-bag = gradunc_ros.tools.bag:main",
            "gradunc-demo = gradunc_ros.tools.demo:main",
        ],
    },
)
