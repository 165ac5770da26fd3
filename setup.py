"""The one compiled part: SHA-256 of many short messages (``chronoml._digests``).

Optional: where OpenSSL's headers or a compiler are missing the build goes on
without it and ``chronoml.digests`` hashes with hashlib, to the same bytes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "chronoml._digests",
            ["src/chronoml/_digests.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
