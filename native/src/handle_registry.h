// The live handles of the C ABI and what depends on what (host code, no CUDA: the host tests exercise it directly).
// A stale or foreign pointer is an error rather than a crash, and a context cannot be destroyed while buffers or decodes
// created from it are alive.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace saber {

/// Live handles, each with the handle it was created from (its context; none for a context).
class HandleRegistry {
public:
    enum class Kind { Context, Buffer, Decode };

    /// Handles that still depend on a context.
    struct Dependents {
        size_t buffers = 0, decodes = 0;
        size_t total() const { return buffers + decodes; }
    };

    /// A handle taken out of the registry by retire(): no longer live, still counted by its owner until released().
    struct Retired {
        Kind kind = Kind::Context;
        const void *owner = nullptr;
    };

    /// Registers `handle`, created from `owner` (nullptr for a context). False, registering nothing, when `owner` is not
    /// live (destroyed meanwhile).
    bool add(const void *handle, Kind kind, const void *owner = nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (owner != nullptr && live_.count(owner) == 0) return false;
        live_[handle] = Retired{kind, owner};
        if (owner != nullptr) ++counter(dependents_[owner], kind);
        return true;
    }

    bool contains(const void *handle) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return live_.count(handle) != 0;
    }

    /// Takes a buffer or decode out of the live set (no other call can use it from now on) while its owner keeps
    /// counting it, so that the owner outlives the release of its resources. False when it was not live.
    bool retire(const void *handle, Retired &out) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = live_.find(handle);
        if (found == live_.end()) return false;
        out = found->second;
        live_.erase(found);
        return true;
    }

    /// The owner of a retired handle stops counting it (its resources are released).
    void released(const Retired &retired) {
        if (retired.owner == nullptr) return;
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = dependents_.find(retired.owner);
        if (found == dependents_.end()) return;
        size_t &count = counter(found->second, retired.kind);
        if (count > 0) --count;
        if (found->second.total() == 0) dependents_.erase(found);
    }

    /// Takes `owner` out of the live set when nothing depends on it (true); otherwise leaves it live and says in `alive`
    /// what still uses it (false). False with `alive` empty when `owner` was not live.
    bool retire_if_unused(const void *owner, Dependents &alive) {
        std::lock_guard<std::mutex> lock(mutex_);
        alive = Dependents{};
        if (live_.count(owner) == 0) return false;
        const auto found = dependents_.find(owner);
        if (found != dependents_.end() && found->second.total() != 0) {
            alive = found->second;
            return false;
        }
        live_.erase(owner);
        return true;
    }

    Dependents dependents(const void *owner) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = dependents_.find(owner);
        return found == dependents_.end() ? Dependents{} : found->second;
    }

private:
    static size_t &counter(Dependents &d, Kind kind) {
        static size_t ignored = 0;
        switch (kind) {
            case Kind::Buffer: return d.buffers;
            case Kind::Decode: return d.decodes;
            default: return ignored = 0;
        }
    }

    mutable std::mutex mutex_;
    std::unordered_map<const void *, Retired> live_;
    std::unordered_map<const void *, Dependents> dependents_;   // by owner; only owners with dependents
};

/// "2 decodes and 1 buffer": the non-zero counts of `d` in words.
inline std::string describe(const HandleRegistry::Dependents &d) {
    std::string out;
    const struct {
        size_t count;
        const char *one, *many;
    } parts[] = {{d.decodes, "decode", "decodes"}, {d.buffers, "buffer", "buffers"}};
    size_t listed = 0, present = 0;
    for (const auto &p : parts) present += p.count != 0;
    for (const auto &p : parts) {
        if (p.count == 0) continue;
        if (listed > 0) out += listed + 1 == present ? " and " : ", ";
        out += std::to_string(p.count) + " " + (p.count == 1 ? p.one : p.many);
        ++listed;
    }
    return out;
}

}  // namespace saber
