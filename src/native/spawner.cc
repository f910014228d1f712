// Starting a tool (ffmpeg) with posix_spawn instead of libuv's fork, and learning of its exit from
// a pidfd watched on the environment's event loop.
//
// Why: libuv starts children with fork(), which copies the page tables of the whole Node process
// (a few ms per 100 MB of RSS) and leaves every page copy-on-write until the child execs, so the
// parent then takes a fault on the first write to each. glibc's posix_spawn uses
// clone(CLONE_VM | CLONE_VFORK): no copy, no faults, the same cost at any RSS. rpv's converter
// starts one ffmpeg per batch of videos from a process holding hundreds of MB of frames.
//
// spawnFiles(file, args, fds, onExit) -> pid
//   file: searched in PATH like execvp; args: argv[1..]; fds[i] becomes the child's descriptor i
//   (-1: /dev/null); nothing else is inherited (glibc >= 2.34; before, descriptors without
//   close-on-exec would be, as with child_process). The child's signal mask is empty and every signal
//   has its default action (Node ignores SIGPIPE; ffmpeg must not). onExit(code, signal) is called
//   once on the event loop: code = exit status or -1, signal = the number that killed it or 0.
//   Throws (code = errno name, e.g. ENOENT) when the child could not start.
// Linux only (pidfd_open needs Linux 5.3); elsewhere, or when the kernel lacks pidfd_open,
// spawnFiles is not exported and rpv uses Node's child_process.
#include "spawner.h"

#if defined(__linux__)

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <string>
#include <vector>

extern char** environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

// glibc before 2.24 started the child with fork and did not report exec errors; 2.32 added
// strerrorname_np, 2.34 posix_spawn_file_actions_addclosefrom_np. musl has neither of the last two.
#if defined(__GLIBC__)
#define RPV_GLIBC_AT_LEAST(major, minor) (__GLIBC__ > (major) || (__GLIBC__ == (major) && __GLIBC_MINOR__ >= (minor)))
#else
#define RPV_GLIBC_AT_LEAST(major, minor) 0
#endif
#if !defined(__GLIBC__) || RPV_GLIBC_AT_LEAST(2, 24)
#define RPV_SPAWN_REPORTS_EXEC_ERRORS 1
#else
#define RPV_SPAWN_REPORTS_EXEC_ERRORS 0
#endif

namespace rpv {
namespace {

struct Child {
  napi_env env = nullptr;
  napi_ref callback = nullptr;
  napi_async_context context = nullptr;
  uv_poll_t poll;
  pid_t pid = 0;
  int pidfd = -1;
  bool hooked = false;
};

int pidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

const char* errnoName(int err) {
#if RPV_GLIBC_AT_LEAST(2, 32)
  return strerrorname_np(err);  // "ENOENT"; null for an unknown number
#else
  switch (err) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EMFILE: return "EMFILE";
    case EBADF: return "EBADF";
    default: return nullptr;
  }
#endif
}

napi_value throwErrno(napi_env env, int err, const std::string& what) {
  const char* name = errnoName(err);
  const std::string message = what + ": " + strerror(err);
  napi_throw_error(env, name ? name : "ERR_RPV_SPAWN", message.c_str());
  return nullptr;
}

void OnClosed(uv_handle_t* handle) {
  Child* c = static_cast<Child*>(handle->data);
  if (c->pidfd >= 0) close(c->pidfd);
  delete c;
}

// The environment is going away with the child still running: stop watching (the child is left
// to the kernel; Node kills nothing it did not start itself either).
void OnTeardown(void* arg) {
  Child* c = static_cast<Child*>(arg);
  c->hooked = false;
  uv_poll_stop(&c->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), OnClosed);
}

void OnReadable(uv_poll_t* handle, int, int) {
  Child* c = static_cast<Child*>(handle->data);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(c->pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;  // not exited yet (the pidfd is readable only once it has)
  uv_poll_stop(handle);
  napi_env env = c->env;
  if (c->hooked) napi_remove_env_cleanup_hook(env, OnTeardown, c);
  c->hooked = false;
  const int code = r > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const int sig = r > 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;

  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value fn, recv, argv[2], result;
    if (napi_get_reference_value(env, c->callback, &fn) == napi_ok && napi_get_global(env, &recv) == napi_ok &&
        napi_create_int32(env, code, &argv[0]) == napi_ok && napi_create_int32(env, sig, &argv[1]) == napi_ok) {
      if (napi_make_callback(env, c->context, recv, fn, 2, argv, &result) == napi_pending_exception) {
        napi_value err;
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
      }
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, c->callback);
  napi_async_destroy(env, c->context);
  uv_close(reinterpret_cast<uv_handle_t*>(handle), OnClosed);
}

bool getString(napi_env env, napi_value v, std::string* out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  out->resize(len + 1);
  if (napi_get_value_string_utf8(env, v, &(*out)[0], len + 1, &len) != napi_ok) return false;
  out->resize(len);
  return out->find('\0') == std::string::npos;
}

napi_value typeError(napi_env env, const char* message) {
  napi_throw_type_error(env, "ERR_RPV_SPAWN", message);
  return nullptr;
}

// Descriptors this call opened or duplicated, closed on every path out.
struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds) close(fd);
  }
};

struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool haveActions = false, haveAttr = false;
  ~SpawnSetup() {
    if (haveActions) posix_spawn_file_actions_destroy(&actions);
    if (haveAttr) posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

bool spawnSupported() {
  static const bool supported = [] {
#if !RPV_SPAWN_REPORTS_EXEC_ERRORS
    return false;  // a missing binary would look like an exit with status 127
#endif
    const int fd = pidfdOpen(getpid());
    if (fd < 0) return false;
    close(fd);
    return true;
  }();
  return supported;
}

napi_value SpawnFiles(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 4) {
    return typeError(env, "rpv spawn: spawnFiles(file, args, fds, onExit) needs 4 arguments");
  }
  std::string file;
  if (!getString(env, argv[0], &file) || file.empty()) return typeError(env, "rpv spawn: file must be a non-empty string");
  bool isArray = false;
  uint32_t nargs = 0, nfds = 0;
  if (napi_is_array(env, argv[1], &isArray) != napi_ok || !isArray || napi_get_array_length(env, argv[1], &nargs) != napi_ok) {
    return typeError(env, "rpv spawn: args must be an array of strings");
  }
  std::vector<std::string> args(nargs + 1);
  args[0] = file;
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || !getString(env, v, &args[i + 1])) {
      return typeError(env, "rpv spawn: args must be an array of strings without NUL characters");
    }
  }
  isArray = false;
  if (napi_is_array(env, argv[2], &isArray) != napi_ok || !isArray || napi_get_array_length(env, argv[2], &nfds) != napi_ok ||
      nfds > 1024) {
    return typeError(env, "rpv spawn: fds must be an array of at most 1024 descriptors");
  }
  std::vector<int32_t> wanted(nfds);
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &wanted[i]) != napi_ok ||
        wanted[i] < -1) {
      return typeError(env, "rpv spawn: fds must hold descriptors (integers >= 0) or -1 for /dev/null");
    }
  }
  napi_valuetype cbType;
  if (napi_typeof(env, argv[3], &cbType) != napi_ok || cbType != napi_function) {
    return typeError(env, "rpv spawn: onExit must be a function");
  }

  // Every source goes to a descriptor >= nfds first, so no dup2 onto 0..nfds-1 can clobber a
  // source still to be copied. The copies are close-on-exec in this process; dup2 clears the flag
  // on the child's copy.
  Fds opened;
  std::vector<int> sources(nfds);
  int devnull = -1;
  for (uint32_t i = 0; i < nfds; i++) {
    int src = wanted[i];
    if (src < 0) {
      if (devnull < 0) {
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) return throwErrno(env, errno, "rpv spawn: cannot open /dev/null");
        opened.fds.push_back(devnull);
      }
      src = devnull;
    }
    const int high = fcntl(src, F_DUPFD_CLOEXEC, static_cast<int>(nfds));
    if (high < 0) return throwErrno(env, errno, "rpv spawn: descriptor " + std::to_string(src));
    opened.fds.push_back(high);
    sources[i] = high;
  }

  SpawnSetup setup;
  setup.haveActions = posix_spawn_file_actions_init(&setup.actions) == 0;
  setup.haveAttr = setup.haveActions && posix_spawnattr_init(&setup.attr) == 0;
  if (!setup.haveAttr) return throwErrno(env, ENOMEM, "rpv spawn");
  for (uint32_t i = 0; i < nfds; i++) posix_spawn_file_actions_adddup2(&setup.actions, sources[i], static_cast<int>(i));
#if RPV_GLIBC_AT_LEAST(2, 34)
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, static_cast<int>(nfds));
#endif
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &all);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> cargv;
  for (std::string& a : args) cargv.push_back(&a[0]);
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, file.c_str(), &setup.actions, &setup.attr, cargv.data(), environ);
  if (err != 0) return throwErrno(env, err, "spawn " + file);

  const int pidfd = pidfdOpen(pid);
  if (pidfd < 0) {
    // Cannot watch it: do not leave it running unseen.
    const int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return throwErrno(env, e, "rpv spawn: pidfd_open");
  }
  uv_loop_t* loop = nullptr;
  Child* c = new Child();
  c->env = env;
  c->pid = pid;
  c->pidfd = pidfd;
  c->poll.data = c;
  napi_value resource;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &c->poll, pidfd) != 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(pidfd);
    delete c;
    napi_throw_error(env, "ERR_RPV_SPAWN", "rpv spawn: cannot watch the child on the event loop");
    return nullptr;
  }
  napi_create_string_utf8(env, "rpv.spawnFiles", NAPI_AUTO_LENGTH, &resource);
  napi_create_reference(env, argv[3], 1, &c->callback);
  napi_async_init(env, nullptr, resource, &c->context);
  napi_add_env_cleanup_hook(env, OnTeardown, c);
  c->hooked = true;
  uv_poll_start(&c->poll, UV_READABLE, OnReadable);

  napi_value result;
  napi_create_int32(env, pid, &result);
  return result;
}

}  // namespace rpv

#else  // not Linux

namespace rpv {
bool spawnSupported() { return false; }
napi_value SpawnFiles(napi_env, napi_callback_info) { return nullptr; }
}  // namespace rpv

#endif
