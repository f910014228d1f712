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
  ],
  # Data-parallel collectives (src/native/collective.cc): a second addon, built only where Gloo's
  # headers and library are installed (Debian: libgloo-dev), so the main addon never needs Gloo.
  # RPV_GLOO=0 leaves it out (build.mjs retries so when it fails to build).
  "variables": {
    "rpv_gloo": "<!(node -p \"process.env.RPV_GLOO !== '0' && ['/usr/include/gloo/rendezvous/store.h', '/usr/lib/libgloo.so.0'].every((f) => require('fs').existsSync(f)) ? 1 : 0\")"
  },
  "conditions": [
    ["rpv_gloo==1", {
      "targets": [
        {
          "target_name": "rpv_collective",
          "sources": ["src/native/collective.cc"],
          "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
          "cflags_cc": ["-std=c++17", "-O2", "-fexceptions"],
          "defines": ["NAPI_VERSION=8"],
          "libraries": ["/usr/lib/libgloo.so.0"],
          "ldflags": ["-pthread"]
        }
      ]
    }]
  ]
}
