// Adding a file's N-API functions to the addon's exports, by name.
#pragma once

#include <node_api.h>

#include <initializer_list>

namespace rpv {

struct NamedFunction {
  const char* name;
  napi_callback cb;
};

// Sets exports[name] = a function calling cb, for each; false at the first that fails.
inline bool exportFunctions(napi_env env, napi_value exports, std::initializer_list<NamedFunction> fns) {
  for (const NamedFunction& f : fns) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn) != napi_ok ||
        napi_set_named_property(env, exports, f.name, fn) != napi_ok) {
      return false;
    }
  }
  return true;
}

}  // namespace rpv
