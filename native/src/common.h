// Error reporting shared by every ABI entry point: one thread-local message, one status per call,
// and a guard that turns C++ exceptions into statuses so none crosses the C boundary.
#pragma once

#include <cstdarg>
#include <new>
#include <string>

#include "saber/saber.h"

namespace saber {

/// Sets the calling thread's last-error message and returns `status`.
saber_status fail(saber_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/// Starts an ABI call on this thread: clears the last-error message and records the entry point's
/// name, which argument errors begin with.
void begin_call(const char *entry_point);

/// The name given to the calling thread's current begin_call.
const char *entry_point();

/// Runs the body of ABI entry point `entry_point` (returning saber_status), mapping escaping
/// exceptions to statuses.
template <typename Body>
saber_status guarded(const char *entry_point, Body &&body) noexcept {
    try {
        begin_call(entry_point);
        return body();
    } catch (const std::bad_alloc &) {
        return fail(SABER_ERROR_OUT_OF_MEMORY, "host memory allocation failed");
    } catch (const std::exception &e) {
        return fail(SABER_ERROR_INVALID_ARGUMENT, "unexpected error: %s", e.what());
    } catch (...) {
        return fail(SABER_ERROR_INVALID_ARGUMENT, "unexpected error");
    }
}

}  // namespace saber

// Returns from the enclosing function with SABER_ERROR_INVALID_ARGUMENT when `pointer` is null.
#define SABER_REQUIRE_NOT_NULL(pointer)                                                          \
    do {                                                                                         \
        if ((pointer) == nullptr)                                                                \
            return ::saber::fail(SABER_ERROR_INVALID_ARGUMENT, "%s: %s is null", ::saber::entry_point(), #pointer); \
    } while (0)
