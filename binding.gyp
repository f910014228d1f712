{
  # rpv's native matmul (src/native/README.md). Built by `npm install` through the package's
  # install script (src/native/build.mjs); the AVX2/FMA microkernel is compiled with a target
  # attribute and chosen at run time, so the binary stays portable (no -march=native).
  "targets": [
    {
      "target_name": "rpv_matmul",
      "sources": [
        "src/native/addon.cc",
        "src/native/attention.cc",
        "src/native/attention_napi.cc",
        "src/native/encoder.cc",
        "src/native/frozen.cc",
        "src/native/gemm.cc",
        "src/native/grid.cc",
        "src/native/mapped.cc",
        "src/native/pointwise.cc",
        "src/native/spawner.cc",
        "src/native/thread_pool.cc",
        "src/native/vmath.cc",
        "src/native/xent.cc"
      ],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "cflags!": ["-O2"],
      "cflags": ["-O3"],
      "defines": ["NAPI_VERSION=8"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1 }
      }
    }
  ]
}
