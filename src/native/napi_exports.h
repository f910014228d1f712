// Adding a file's N-API functions to the addon's exports, by name. Every function goes through
// one guard: a C++ exception that leaves it (kernel scratch that cannot be allocated, a thread
// that cannot start, anything else) becomes a JavaScript error naming the function, instead of
// unwinding into Node, which would end the process in std::terminate without a word.
#pragma once

#include <node_api.h>

#include <exception>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>

#include "scratch.h"

namespace rpv {

struct NamedFunction {
  const char* name;
  napi_callback cb;
};

// An error whose what() is a whole sentence for the user (said after the function's name).
class NativeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The message for the exception being handled, thrown by the exported function `name`.
inline std::string describeNativeException(const char* name) {
  const std::string who = std::string("rpv native: ") + name + ": ";
  try {
    throw;
  } catch (const ScratchError& e) {
    return who + "out of memory: " + e.what() + "; free memory, or lower prompt.max_tokens, data.batch_size or model.threads";
  } catch (const std::bad_alloc&) {
    return who + "out of memory (an allocation of unknown size failed); free memory, or lower prompt.max_tokens, data.batch_size or model.threads";
  } catch (const NativeError& e) {
    return who + e.what();
  } catch (const std::exception& e) {
    return who + "unexpected C++ exception: " + e.what() + " (a bug in rpv's native addon: please report it with the command that ran)";
  } catch (...) {
    return who + "unexpected C++ exception of unknown type (a bug in rpv's native addon: please report it with the command that ran)";
  }
}

// Throws the current C++ exception into JavaScript as an Error with code ERR_RPV_NATIVE, unless
// the function had already thrown one.
inline void throwNativeException(napi_env env, const char* name) {
  std::string message;
  try {
    message = describeNativeException(name);
  } catch (...) {
    message = std::string("rpv native: ") + name + ": out of memory";
  }
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_error(env, "ERR_RPV_NATIVE", message.c_str());
}

// The callback napi_create_function registers: the exported function, guarded.
inline napi_value guardedCall(napi_env env, napi_callback_info info) {
  void* data = nullptr;
  if (napi_get_cb_info(env, info, nullptr, nullptr, nullptr, &data) != napi_ok || !data) {
    napi_throw_error(env, "ERR_RPV_NATIVE", "rpv native: cannot read the call's arguments");
    return nullptr;
  }
  const NamedFunction* f = static_cast<const NamedFunction*>(data);
  try {
    return f->cb(env, info);
  } catch (...) {
    throwNativeException(env, f->name);
    return nullptr;
  }
}

// Sets exports[name] = a function calling cb (guarded), for each; false at the first that fails.
inline bool exportFunctions(napi_env env, napi_value exports, std::initializer_list<NamedFunction> fns) {
  for (const NamedFunction& f : fns) {
    // Lives as long as the function object: freed by its finalizer.
    NamedFunction* data = new (std::nothrow) NamedFunction(f);
    if (!data) return false;
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, guardedCall, data, &fn) != napi_ok) {
      delete data;
      return false;
    }
    if (napi_add_finalizer(env, fn, data, [](napi_env, void* d, void*) { delete static_cast<NamedFunction*>(d); }, nullptr, nullptr) != napi_ok) {
      delete data;
      return false;
    }
    if (napi_set_named_property(env, exports, f.name, fn) != napi_ok) return false;
  }
  return true;
}

}  // namespace rpv
