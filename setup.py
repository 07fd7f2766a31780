"""atso_nnunet: asynchronous teacher-student optimization (ATSO) as an nnU-Net v2 plugin."""
from setuptools import find_packages, setup

setup(
    name="atso_nnunet",
    version="0.1.0",
    description="Semi-supervised segmentation for nnU-Net v2: ATSO, STSO, self-learning, tri-view 2D",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["atso_nnunet", "atso_nnunet.*"]) + ["atso_nnunet.plans"],
    # The experiment plans live in the top-level plans/ folder (readable, diffable JSON) and are
    # installed as the package atso_nnunet.plans so they are found from any working directory.
    package_dir={"atso_nnunet.plans": "plans"},
    package_data={"atso_nnunet.plans": ["*/*.json"], "atso_nnunet.nnunet": ["ext/*.py"]},
    install_requires=[
        "nnunetv2>=2.8,<2.9",
        "torch",
        "monai>=1.3",
        "SimpleITK>=2.2",
        "batchgenerators>=0.25",
        "numpy",
        "scipy",
        "matplotlib",
        "pydicom>=2.4",
        "submitit>=1.5",
        "tqdm",
    ],
    # wandb: nnU-Net's own W&B logging (nnUNet_wandb_enabled=1; docs/cluster.md); in the test extra so
    # that tests/run/test_wandb_logging.py runs wherever the suite does (about 60 MB, seconds to install)
    extras_require={"test": ["pytest>=7", "wandb"], "wandb": ["wandb"]},
    entry_points={
        "console_scripts": [
            "atso_nnunet_run=atso_nnunet.cli.run:main",
            "atso_nnunet_synth=atso_nnunet.cli.synth:main",
            "atso_nnunet_convert=atso_nnunet.cli.convert:main",
            "atso_nnunet_make_plan=atso_nnunet.cli.make_plan:main",
            "atso_nnunet_segment=atso_nnunet.cli.segment:main",
            "atso_nnunet_check=atso_nnunet.cli.check:main",
            "atso_nnunet_compare=atso_nnunet.cli.compare:main",
            "atso_nnunet_publish=atso_nnunet.cli.publish:main",
            "atso_nnunet_diagnose=atso_nnunet.cli.diagnose:main",
            "atso_nnunet_view_volumes=atso_nnunet.cli.view_volumes:main",
        ]
    },
)
