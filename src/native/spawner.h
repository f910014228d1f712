// posix_spawn of a tool with chosen descriptors and exit seen through a pidfd; see spawner.cc.
#pragma once

#include <node_api.h>

namespace rpv {

// Whether spawnFiles can work here (Linux with pidfd_open).
bool spawnSupported();

// spawnFiles(file, args, fds, onExit) -> pid
napi_value SpawnFiles(napi_env env, napi_callback_info info);

}  // namespace rpv
