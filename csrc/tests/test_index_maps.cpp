// Unit test of csrc/index_maps.h (the maps both the CPU and the CUDA kernels use) against brute force: build the
// padded and rolled map in either order (pad then roll, roll then pad), the official region mask and relative
// position index explicitly, then compare with the closed-form maps for every small geometry, rectangular windows
// and per-axis shifts included. Exit status 0 when all agree.
#include <cstdio>
#include <vector>

#include "../index_maps.h"

namespace maps = swin_kernels::maps;

namespace {

int failures = 0;
struct Case {
  int h, w, mh, mw, sh, sw;
  bool roll_first;
};

void expect(bool ok, const char* what, const Case& c, long window, int token) {
  if (ok) return;
  if (++failures <= 20)
    std::printf("FAIL %s: H=%d W=%d M=(%d,%d) s=(%d,%d) roll_before_pad=%d window=%ld token=%d\n", what, c.h, c.w,
                c.mh, c.mw, c.sh, c.sw, c.roll_first, window, token);
}

// The official construction of the shift regions: slices (0, -M), (-M, -s), (-s, None) along each padded axis
// (with s = 0 the last slice covers the whole axis: one region).
int official_axis_region(long pos, long length, int m, int s) {
  if (s == 0) return 0;
  if (pos < length - m) return 0;
  if (pos < length - s) return 1;
  return 2;
}

// Unrolled coordinate of rolled position p, built the way the libraries build the map (-1: padding).
long brute_unrolled(long p, long length, long padded, int s, bool roll_first) {
  if (roll_first) {  // roll the unpadded axis (torch.roll: modulo its length), then pad
    if (p >= length) return -1;
    return (p + s) % length;
  }
  const long y = (p + s) % padded;  // pad, then roll the padded axis
  return y < length ? y : -1;
}

void check_geometry(const Case& c) {
  const maps::WindowGrid g = maps::make_grid(c.h, c.w, c.mh, c.mw, c.sh, c.sw, c.roll_first);
  const long hp = (c.h + c.mh - 1) / c.mh * c.mh, wp = (c.w + c.mw - 1) / c.mw * c.mw;
  expect(g.padded_height == hp && g.padded_width == wp, "padded size", c, -1, -1);
  expect(g.windows_per_image == (hp / c.mh) * (wp / c.mw) && g.tokens == c.mh * c.mw, "window count", c, -1, -1);
  std::vector<long> rolled(hp * wp), regions(hp * wp);
  for (long y = 0; y < hp; ++y)
    for (long x = 0; x < wp; ++x) {
      const long sy = brute_unrolled(y, c.h, hp, c.sh, c.roll_first);
      const long sx = brute_unrolled(x, c.w, wp, c.sw, c.roll_first);
      rolled[y * wp + x] = (sy >= 0 && sx >= 0) ? sy * c.w + sx : -1;
      regions[y * wp + x] = official_axis_region(y, hp, c.mh, c.sh) * 3 + official_axis_region(x, wp, c.mw, c.sw);
    }
  std::vector<int> seen(static_cast<size_t>(c.h) * c.w, 0);
  for (long win = 0; win < g.windows_per_image; ++win) {
    const long wr = win / (wp / c.mw), wc = win % (wp / c.mw);
    bool mixed = false;
    for (int t = 0; t < c.mh * c.mw; ++t) {
      const long y = wr * c.mh + t / c.mw, x = wc * c.mw + t % c.mw;
      const long pixel = maps::token_pixel(g, win, t);
      expect(pixel == rolled[y * wp + x], "token_pixel", c, win, t);
      expect(maps::token_region(g, win, t) == regions[y * wp + x], "token_region", c, win, t);
      if (pixel >= 0) {
        seen[pixel] += 1;
        int64_t back_window = -1;
        int32_t back_token = -1;
        maps::pixel_token(g, pixel, &back_window, &back_token);
        expect(back_window == win && back_token == t, "pixel_token inverts token_pixel", c, win, t);
      }
      mixed = mixed || regions[y * wp + x] != regions[wr * c.mh * wp + wc * c.mw];
    }
    // window_is_masked may be conservative only where no mask applies anyway: it must flag every mixed window.
    expect(!mixed || maps::window_is_masked(g, win), "window_is_masked", c, win, -1);
    expect((c.sh > 0 || c.sw > 0) || !maps::window_is_masked(g, win), "unshifted window masked", c, win, -1);
  }
  for (long p = 0; p < static_cast<long>(c.h) * c.w; ++p) expect(seen[p] == 1, "each pixel held once", c, p, -1);
}

// The official relative position index (coords difference, shifted by T-1, row scaled by 2Tw-1).
void check_relative_index(int mh, int mw, int th, int tw) {
  const Case c{0, 0, mh, mw, th, tw, false};
  for (int i = 0; i < mh * mw; ++i)
    for (int j = 0; j < mh * mw; ++j) {
      const int d_row = i / mw - j / mw + th - 1, d_col = i % mw - j % mw + tw - 1;
      const int expected = d_row * (2 * tw - 1) + d_col;
      expect(maps::relative_position_index(mh, mw, th, tw, i, j) == expected, "relative_position_index", c, i, j);
      expect(expected >= 0 && expected < (2 * th - 1) * (2 * tw - 1), "relative index range", c, i, j);
    }
}

// A volume: the brute-force map of each axis combined, regions (d * 3 + row) * 3 + col, windows row-major over
// (planes, rows, columns) of the grid and tokens row-major over (depth, row, column) inside a window.
struct Volume {
  int d, h, w, md, mh, mw, sd, sh, sw;
  bool roll_first;
};

void check_volume(const Volume& v) {
  const Case c{v.h, v.w, v.mh, v.mw, v.sh, v.sw, v.roll_first};  // for messages
  const maps::WindowGrid g = maps::make_grid(v.d, v.h, v.w, v.md, v.mh, v.mw, v.sd, v.sh, v.sw, v.roll_first);
  const long dp = (v.d + v.md - 1) / v.md * v.md, hp = (v.h + v.mh - 1) / v.mh * v.mh, wp = (v.w + v.mw - 1) / v.mw * v.mw;
  const long grid_d = dp / v.md, grid_h = hp / v.mh, grid_w = wp / v.mw;
  expect(g.windows_per_image == grid_d * grid_h * grid_w && g.tokens == v.md * v.mh * v.mw, "volume window count", c,
         -1, -1);
  expect(g.pixels == static_cast<long>(v.d) * v.h * v.w, "volume pixels", c, -1, -1);
  std::vector<int> seen(static_cast<size_t>(v.d) * v.h * v.w, 0);
  for (long win = 0; win < g.windows_per_image; ++win) {
    const long wz = win / (grid_h * grid_w), wy = (win / grid_w) % grid_h, wx = win % grid_w;
    bool mixed = false;
    int first_region = -1;
    for (int t = 0; t < g.tokens; ++t) {
      const long z = wz * v.md + t / (v.mh * v.mw), y = wy * v.mh + (t / v.mw) % v.mh, x = wx * v.mw + t % v.mw;
      const long sz = brute_unrolled(z, v.d, dp, v.sd, v.roll_first);
      const long sy = brute_unrolled(y, v.h, hp, v.sh, v.roll_first);
      const long sx = brute_unrolled(x, v.w, wp, v.sw, v.roll_first);
      const long expected = (sz >= 0 && sy >= 0 && sx >= 0) ? (sz * v.h + sy) * v.w + sx : -1;
      const int region = (official_axis_region(z, dp, v.md, v.sd) * 3 + official_axis_region(y, hp, v.mh, v.sh)) * 3 +
                         official_axis_region(x, wp, v.mw, v.sw);
      const long pixel = maps::token_pixel(g, win, t);
      expect(pixel == expected, "volume token_pixel", c, win, t);
      expect(maps::token_region(g, win, t) == region, "volume token_region", c, win, t);
      if (first_region < 0) first_region = region;
      mixed = mixed || region != first_region;
      if (pixel >= 0) {
        seen[pixel] += 1;
        int64_t back_window = -1;
        int32_t back_token = -1;
        maps::pixel_token(g, pixel, &back_window, &back_token);
        expect(back_window == win && back_token == t, "volume pixel_token inverts token_pixel", c, win, t);
      }
    }
    expect(!mixed || maps::window_is_masked(g, win), "volume window_is_masked", c, win, -1);
  }
  for (size_t p = 0; p < seen.size(); ++p) expect(seen[p] == 1, "volume: each pixel held once", c, p, -1);
}

// The 3-D relative position index ((dd + Td-1)(2Th-1) + (dh + Th-1))(2Tw-1) + (dw + Tw-1), as torchvision's swin3d
// and MONAI build it.
void check_relative_index_3d(int md, int mh, int mw, int td, int th, int tw) {
  const Case c{0, 0, mh, mw, th, tw, false};
  const int n = md * mh * mw;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const int dd = i / (mh * mw) - j / (mh * mw) + td - 1;
      const int dh = (i / mw) % mh - (j / mw) % mh + th - 1, dw = i % mw - j % mw + tw - 1;
      const int expected = (dd * (2 * th - 1) + dh) * (2 * tw - 1) + dw;
      expect(maps::relative_position_index(md, mh, mw, td, th, tw, i, j) == expected, "3-D relative_position_index", c,
             i, j);
    }
}

}  // namespace

int main() {
  int geometries = 0;
  for (int roll_first = 0; roll_first <= 1; ++roll_first)
    for (int mh = 1; mh <= 6; ++mh)
      for (int mw = 1; mw <= 6; ++mw)
        for (int sh = 0; sh < mh; sh += (mh > 3 ? 2 : 1))
          for (int sw = 0; sw < mw; sw += (mw > 3 ? 2 : 1))
            for (int h = 1; h <= 13; h += 2)
              for (int w = 1; w <= 13; w += 3, ++geometries)
                check_geometry({h, w, mh, mw, sh, sw, roll_first == 1});
  for (int m = 1; m <= 8; ++m)
    for (int s = 0; s < m; ++s)
      for (int h = 1; h <= 19; ++h)
        for (int w = 1; w <= 19; ++w, ++geometries) check_geometry({h, w, m, m, s, s, false});
  check_geometry({56, 56, 7, 7, 3, 3, false});
  check_geometry({28, 100, 4, 7, 0, 3, true});  // timm's per-axis clamp
  check_geometry({200, 5, 12, 12, 6, 6, false});
  check_geometry({2, 3, 7, 7, 3, 3, true});  // roll larger than the map (timm always_partition)
  for (int mh = 1; mh <= 8; ++mh)
    for (int mw = 1; mw <= 8; ++mw)
      for (int extra = 0; extra <= 2; ++extra) check_relative_index(mh, mw, mh + extra, mw + 2 - extra);
  int volumes = 0;
  for (int roll_first = 0; roll_first <= 1; ++roll_first)
    for (int md = 1; md <= 3; ++md)
      for (int mh = 1; mh <= 3; ++mh)
        for (int sd = 0; sd < md; ++sd)
          for (int sh = 0; sh < mh; ++sh)
            for (int d = 1; d <= 7; d += 3)
              for (int h = 2; h <= 5; h += 3, ++volumes) check_volume({d, h, 5, md, mh, 2, sd, sh, 1, roll_first == 1});
  check_volume({8, 14, 14, 8, 7, 7, 4, 3, 3, false});  // torchvision swin3d_t's first stage (16 frames / 2)
  check_volume({5, 9, 10, 2, 4, 3, 1, 2, 1, false});
  check_volume({3, 3, 3, 7, 7, 7, 0, 0, 0, false});  // MONAI: one window larger than the volume
  volumes += 3;
  for (int md = 1; md <= 3; ++md)
    for (int m = 1; m <= 4; ++m) check_relative_index_3d(md, m, m + 1, md + 1, m, m + 1);
  // 64-bit: a pixel index past 2^31 stays exact.
  const maps::WindowGrid big = maps::make_grid(70000, 70000, 7, 3);
  expect(maps::token_pixel(big, big.windows_per_image - 1, 0) ==
             (static_cast<int64_t>(big.padded_height - 7 + 3)) * 70000 + (big.padded_width - 7 + 3),
         "64-bit pixel", Case{70000, 70000, 7, 7, 3, 3, false}, big.windows_per_image - 1, 0);
  if (failures) {
    std::printf("%d mismatches\n", failures);
    return 1;
  }
  std::printf("index maps agree with brute force on %d geometries and %d volumes\n", geometries + 4, volumes);
  return 0;
}
