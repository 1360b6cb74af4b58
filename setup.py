"""The compiled part (``plugins/common/native``): a thread pool for oneDNN, AMX kernels for linear
layers and fused attention, and the preparation of the attention's queries and keys. It is
optional: where it does not build, the oneDNN path splits its work over Python threads and runs
linear layers and attention as oneDNN matmuls instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("plugins.common.native._native",
                             ["plugins/common/native/threadpool.cpp", "plugins/common/native/attention.cpp",
                              "plugins/common/native/heads.cpp", "plugins/common/native/linear.cpp"],
                             extra_compile_args=["-O2", "-std=c++17"], extra_link_args=["-pthread"],
                             optional=True)])
