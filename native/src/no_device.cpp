// Device entry points of a library built without CUDA (SABER_CUDA=OFF, or AUTO without nvcc):
// each reports SABER_ERROR_NO_DEVICE with how to build one that has them; destroying NULL succeeds.
#include "common.h"

namespace {

saber_status no_device(const char *function) {
    return saber::fail(SABER_ERROR_NO_DEVICE,
                       "%s: libsaber_native was built without CUDA; configure with -DSABER_CUDA=ON and a CUDA toolkit "
                       "(tools/install-cuda-toolkit.sh) to use the device",
                       function);
}

}  // namespace

#define SABER_NO_DEVICE(signature) \
    SABER_API saber_status signature { return no_device(__func__); }
#define SABER_NO_DEVICE_DESTROY(signature, handle) \
    SABER_API saber_status signature { return handle == nullptr ? SABER_OK : no_device(__func__); }

extern "C" {
SABER_NO_DEVICE(saber_context_create(int32_t, saber_context *))
SABER_NO_DEVICE(saber_exact_row_device(saber_context, const float *, int32_t, int32_t, int32_t, int32_t, float, uint64_t, int32_t, int32_t,
                                       int32_t, int32_t *, int32_t *, float *))
SABER_NO_DEVICE(saber_exact_eval_device(saber_context, int32_t, const float *, float *, int64_t))
SABER_NO_DEVICE(saber_exact_fixed_terms_device(saber_context, const float *, uint64_t *, int64_t))
SABER_NO_DEVICE_DESTROY(saber_context_destroy(saber_context context), context)
SABER_NO_DEVICE(saber_context_stream(saber_context, void **))
SABER_NO_DEVICE(saber_context_synchronize(saber_context))
SABER_NO_DEVICE(saber_context_copy_to_device(saber_context, void *, const void *, uint64_t))
SABER_NO_DEVICE(saber_context_copy_to_host(saber_context, void *, const void *, uint64_t))
SABER_NO_DEVICE(saber_context_widen_ids(saber_context, const void *, void *, int64_t))
SABER_NO_DEVICE(saber_buffer_create(saber_context, uint64_t, saber_buffer *))
SABER_NO_DEVICE_DESTROY(saber_buffer_destroy(saber_buffer buffer), buffer)
SABER_NO_DEVICE(saber_buffer_device_pointer(saber_buffer, void **))
SABER_NO_DEVICE(saber_buffer_upload(saber_buffer, uint64_t, const void *, uint64_t))
SABER_NO_DEVICE(saber_buffer_download(saber_buffer, uint64_t, void *, uint64_t))
SABER_NO_DEVICE(saber_decode_create(saber_context, const saber_decode_options *, int32_t, int32_t, int32_t, const int32_t *,
                                    const int32_t *, int32_t, saber_decode *))
SABER_NO_DEVICE_DESTROY(saber_decode_destroy(saber_decode decode), decode)
SABER_NO_DEVICE(saber_decode_length(saber_decode, int32_t *))
SABER_NO_DEVICE(saber_decode_canvas_pointer(saber_decode, void **))
SABER_NO_DEVICE(saber_decode_step(saber_decode, const void *, int32_t))
SABER_NO_DEVICE(saber_decode_poll(saber_decode, saber_decode_status *))
SABER_NO_DEVICE(saber_decode_query(saber_decode, saber_decode_status *, int64_t *))
SABER_NO_DEVICE(saber_decode_read(saber_decode, int32_t *, int32_t *, int32_t *))
SABER_NO_DEVICE(saber_decode_read_trace(saber_decode, int32_t, int32_t, saber_trace_step *, int32_t *, int32_t *, float *, float *))
SABER_NO_DEVICE(saber_event_record(saber_context, void **))
SABER_NO_DEVICE(saber_event_elapsed_ms(void *, void *, float *))
SABER_NO_DEVICE_DESTROY(saber_event_destroy(void *event), event)
}
