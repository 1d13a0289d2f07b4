"""The two DALI graphs of the training loader. Which step runs where (on a GPU loader, graph 3 runs on the GPU):

1. `geometry_graph` (DALI on the CPU, for a GPU loader too, prefetching ahead of the training step): decode the
   alpha PNGs of the foreground and of the optional second foreground; one nearest-neighbour `warp_affine` per alpha
   applies, in a single resampling, the resize of the second foreground to the first one's size, the random square
   resize (p 0.25), the random affine (scale, shear, per-axis flips, rotation for large images), the horizontal flip
   and the upscaling of small images.
   A sample without a second foreground has its (blank) second alpha warped to one pixel, so it costs nothing.
2. torch on the CPU, right after it (`combine.py`, `trimap.py`, `crop.py`; on a GPU loader the crop-sized results
   then go up in one pinned copy per input on a copy stream, so the data-dependent crop draw never syncs host and
   device and no loader kernel waits behind the training step): the combined alpha
   1 - (1 - a1)(1 - a2) for the combined samples only (DALI's CPU arithmetic would pay full-frame float passes for
   every sample); trimap by elliptical erosion (DALI has no CPU erode) and the choice of the crop centre among the
   unknown pixels (a data-dependent choice no DALI operator makes), eroding only the region of admissible centres
   and then the chosen window, each with the element's reach around it (exact; `crop.crop_from_alpha`); the alphas
   are cut to the crop, and for combined samples the per-pixel weights of the two foregrounds are made on the crop.
3. `finish_graph` (DALI): decode the foreground and the background (each decoded once, here), warp the foreground
   straight into the crop window (so colour work never touches pixels outside the crop); decode the second foreground
   (a blank 1 x 1 PNG for uncombined samples) and, inside a DALI conditional on the per-sample `combine` flag, warp it
   and blend the two with the torch weights (one fused expression), so uncombined samples skip all of it; HSV jitter
   of the foreground (DALI `hsv` on the CPU, the same linear map as arithmetic on the GPU, `hsv.py`; means over
   alpha > 0 with DALI reductions), background decoded only over the crop's region (`decoders.image_slice`) and,
   inside a conditional on the per-sample `bg_resample` flag, upscaled + cropped by one cubic ROI `resize` (where its
   scale is 1 the decoded region is the crop itself and is not resampled), and the composite
   image = fg * alpha + bg * (1 - alpha) as one fused DALI arithmetic expression (uint8 fg/bg and the float alpha and
   1 - alpha from torch, no casts), in float (not re-quantised).
4. torch, in a helper thread: the outputs become N x C x H x W float32 in [0, 1] in one pass each.

Where this differs from the letter of docs/model.md §4.2 (same augmentation in distribution, cheaper):
- resize, affine, flip and upscale are one nearest-neighbour resampling instead of several in a row (pixel rounding
  can differ from the sequential version); the second foreground is warped straight into the crop and combined there
  (the combination is per pixel, so it commutes with nearest resampling);
- the trimap is eroded on the upscaled frame with the drawn sizes multiplied by the upscale factor (the spec erodes
  before upscaling); the elliptical element is our own (pixel centres inside the inscribed ellipse), not OpenCV's;
- HSV jitter: DALI's `hsv` scales saturation and value, so the drawn additive shift of each mean becomes the
  multiplier (mean + shift) / mean; values are clamped at 1 instead of reflected; the means use every 4th pixel;
- when the trimap has no unknown pixel, the background region under the frame (not the whole background) is resized
  to the crop.

With `photos=True` (photo-* shards: real photos with estimated fg and bg, never re-composited) the composites path
runs with the stored photo decoded and warped as the image output, and without colour jitter (which would make
the fg disagree with the photo).

With `composites=True` (train-* shards) the same graphs read the stored alpha, trimap, fg and bg of each sample:
the one warp is applied to all four (the trimap nearest-neighbour, so it keeps 0/128/255), there is no second
foreground and no erosion, the crop centre comes from the stored trimap, and the colour jitter is applied to the fg
before the image is recomposited in the graph (so the identity still holds; the stored image.png is not decoded).

Shard encodings (the manifest's "encoding"): with "png" every member goes through DALI's image decoders (PNG/JPEG;
"mixed", i.e. nvJPEG for JPEG, on the GPU); with "raw" the members are `.npy` pixel arrays read by `decoders.numpy` on
the CPU (a header parse and a copy), the background's crop window is cut by `slice` instead of `image_slice`, and on
the GPU the arrays are then copied to the device. Both give the same pixels, so the same batches.

All random parameters are drawn in Python from NumPy generators keyed by (seed, epoch, rank, world size, iteration) and
fed through `external_source`, so the stream does not depend on thread scheduling. No Python callback runs per pixel.
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline

from .decoding import decode_member, decode_member_window
from .hsv import hsv_by_arithmetic

# Names of the inputs of the two graphs, in the order the loader feeds them.
GEOMETRY_INPUTS = ("alpha1", "alpha2", "matrix1", "matrix2", "frame_size", "frame_size2")
FINISH_INPUTS = ("fg1", "fg2", "bg", "matrix1", "matrix2", "bg_slice_start", "bg_slice_shape", "bg_resample",
                 "bg_roi_start", "bg_roi_end", "alpha", "alpha_inv", "weight1", "weight2", "combine", "hue", "sat_u", "val_u", "jitter")
# Inputs of the background's region decoding and resampling (left out with composites, whose bg gets the fg's warp).
BG_REGION_INPUTS = ("bg_slice_start", "bg_slice_shape", "bg_resample", "bg_roi_start", "bg_roi_end")
# Inputs of the combination step (fed only when it is in the graph) and of the HSV jitter (likewise).
COMBINE_INPUTS = ("fg2", "matrix2", "weight1", "weight2", "combine")
JITTER_INPUTS = ("hue", "sat_u", "val_u", "jitter")


# On the GPU these finish inputs live on the device (pixel data and per-sample scalars used in GPU arithmetic);
# encoded bytes, warp matrices, slice/ROI coordinates and the predicates of the conditionals stay on the CPU.
_GPU_FINISH_INPUTS = ("alpha", "alpha_inv", "weight1", "weight2", "hue", "sat_u", "val_u", "jitter")


def geometry_graph(batch_size: int, num_threads: int, source, composites: bool = False,
                   encoding: str = "png") -> Pipeline:
    """Graph 1: alphas decoded and warped into the (upscaled) augmented frame; `source()` yields the input batches.

    Always on the CPU, for GPU loaders too: the crop step that reads its outputs runs there. Outputs the two warped
    uint8 alphas; the second is warped to one pixel when the sample is not combined (its `frame_size2`), and the
    loader combines them in torch only where needed. With `composites` the second input is the sample's stored
    trimap, warped like the alpha.
    """

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=None, prefetch_queue_depth=2,
                  exec_dynamic=True)
    def graph():
        a1_bytes, a2_bytes, m1, m2, size1, size2 = fn.external_source(source=source,
                                                                      num_outputs=len(GEOMETRY_INPUTS), batch=True)
        a1 = decode_member(a1_bytes, "cpu", encoding, types.GRAY)
        a2 = decode_member(a2_bytes, "cpu", encoding, types.GRAY)
        a1 = fn.warp_affine(a1, matrix=m1, size=size1, interp_type=types.INTERP_NN, fill_value=0)
        a2 = fn.warp_affine(a2, matrix=m2, size=size2, interp_type=types.INTERP_NN, fill_value=0)
        return a1, a2

    return graph()


def finish_graph(batch_size: int, num_threads: int, device_id: int | None, device: str, crop: int,
                 composites: bool = False, combine_enabled: bool = True, jitter_enabled: bool = True,
                 encoding: str = "png", stored_image: bool = False, arithmetic_hsv: bool | None = None) -> Pipeline:
    """Graph 3: foreground warp into the crop, combination, HSV jitter, background crop and the composite.

    Outputs image (float HWC on 0..255), fg and bg (uint8 HWC). With `composites` the background is the sample's own
    (fixed) background, so it gets the foreground's warp. Steps switched off by the options are left out of the
    graph (`combine_enabled`, `jitter_enabled`), so they cost nothing and leave colours bit-exact. The combination
    sits in a DALI conditional on the per-sample `combine` predicate, so samples without a second foreground neither
    decode nor warp one and pay no arithmetic for it. With `stored_image` (photo-* shards, composites only) the
    image output is the sample's stored photo (fed in the second-fg slot) under the same warp, never a composite.
    `arithmetic_hsv` (default: on the GPU) writes the jitter's HSV change as arithmetic (`hsv.py`), whose amounts stay
    on the device; DALI's `hsv` would need them on the host.
    """
    if arithmetic_hsv is None:
        arithmetic_hsv = device == "cuda"

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1,
                  exec_dynamic=True, enable_conditionals=combine_enabled or not composites)
    def graph():
        gpu = device == "cuda"
        (fg1_b, fg2_b, bg_b, m1, m2, slice0, slice_shape, resample, roi0, roi1, alpha, alpha_inv, w1, w2, combine, hue, sat_u,
         val_u, jitter) = [
            fn.external_source(name=n, device="gpu" if gpu and n in _GPU_FINISH_INPUTS else "cpu", no_copy=not gpu)
            for n in FINISH_INPUTS]  # on the CPU DALI reads the fed arrays in place (the loader keeps them alive)
        fg1 = decode_member(fg1_b, device, encoding, types.RGB)
        fg = fn.warp_affine(fg1, matrix=m1, size=[crop, crop], interp_type=types.INTERP_NN, fill_value=0)
        if combine_enabled:
            # decoded outside the conditional (uncombined samples carry a blank 1 x 1 member: free to decode), so
            # the "mixed" decoder never sits inside a branch
            fg2 = decode_member(fg2_b, device, encoding, types.RGB)
            if combine:
                # F = F1 w1 + F2 w2 with the per-pixel weights made in torch (combine.py); one fused expression
                fg2 = fn.warp_affine(fg2, matrix=m2, size=[crop, crop], interp_type=types.INTERP_NN, fill_value=0)
                fg = fn.cast(fg * w1 + fg2 * w2, dtype=types.UINT8)  # rounds and saturates
        if composites:
            bg = decode_member(bg_b, device, encoding, types.RGB)
        else:  # decode only the rows/columns the crop needs
            bg = decode_member_window(bg_b, slice0, slice_shape, device, encoding, types.RGB)

        if jitter_enabled:
            # HSV jitter (spec step 6): shifts of saturation/value scaled by their means over alpha > 0, applied by
            # DALI's `hsv` as multipliers that move each mean by the drawn shift; identity where alpha is all zero.
            # the means are taken on every 4th pixel of each axis (nearest downscale): same statistic in expectation
            # at 1/16 of the cost of DALI's channel reductions
            small = max(1, crop // 4)
            fgs = fn.resize(fg, size=[small, small], interp_type=types.INTERP_NN, antialias=False)
            acs = fn.resize(alpha, size=[small, small], interp_type=types.INTERP_NN, antialias=False)
            vmax = fn.cast(fn.reductions.max(fgs, axes=[2]), dtype=types.FLOAT)
            sat = (vmax - fn.cast(fn.reductions.min(fgs, axes=[2]), dtype=types.FLOAT)) / (vmax + 1e-6)
            mask = fn.cast(fn.reshape(acs, layout="HW", shape=[small, small]) > 0, dtype=types.FLOAT)
            count = fn.reductions.sum(mask)
            use = jitter * fn.cast(count > 0.0, dtype=types.FLOAT)
            s_mean = fn.reductions.sum(sat * mask) / (count + 1e-6)
            v_mean = fn.reductions.sum(vmax * mask) / (count + 1e-6) / 255.0
            s_arg = use * ((s_mean + sat_u * (1.1 - s_mean) / 10.0) / (s_mean + 1e-6)) + (1.0 - use)
            v_arg = use * ((v_mean + val_u * (1.1 - v_mean) / 10.0) / (v_mean + 1e-6)) + (1.0 - use)
            h_arg = hue * use
            if arithmetic_hsv:  # the same linear map with device-side amounts (hsv.py): no copy to the host
                fg = hsv_by_arithmetic(fg, h_arg, s_arg, v_arg)
            else:
                fg = fn.hsv(fg, hue=h_arg, saturation=s_arg, value=v_arg)

        if composites:
            bgc = fn.warp_affine(bg, matrix=m1, size=[crop, crop], interp_type=types.INTERP_NN, fill_value=0)
            if stored_image:  # the photo itself, warped like its alpha, fg and bg (uint8 out; the loader scales)
                photo = decode_member(fg2_b, device, encoding, types.RGB)
                image = fn.warp_affine(photo, matrix=m1, size=[crop, crop], interp_type=types.INTERP_NN, fill_value=0)
                return image, fg, bgc
        else:
            bgc = bg  # the slice is the crop window itself where the background needs no resampling (scale 1)
            if resample:
                bgc = fn.resize(bg, size=[crop, crop], roi_start=roi0, roi_end=roi1, roi_relative=False,
                                interp_type=types.INTERP_CUBIC, antialias=True)
        # the composite, one fused expression of three operations in float on the 0..255 scale (not re-quantised):
        # uint8 fg/bg times the float alpha and 1 - alpha (both fed from torch, 0..1) promote to float without casts;
        # uint8 fg/bg go out as they are, the loader scales everything to [0, 1] in torch
        image = fg * alpha + bgc * alpha_inv
        return image, fg, bgc

    return graph()
