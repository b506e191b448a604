"""The one compiled part of confsvc: the media plane's per-packet fan-out (confsvc/media/_fanout.c).

Optional: where it cannot be built (no C compiler), the node runs the same fan-out in Python
(slower, same output) and says so at start-up; pyproject.toml holds everything else.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "confsvc.media._fanout",
            ["confsvc/media/_fanout.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
