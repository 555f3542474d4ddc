// Unit test of csrc/index_maps.h (the maps both the CPU and the CUDA kernels use) against brute force: build the
// padded, rolled and partitioned map, the official region mask and relative position index explicitly, then
// compare with the closed-form maps for every small geometry. Exit status 0 when all agree.
#include <cstdio>
#include <vector>

#include "../index_maps.h"

namespace maps = swin_kernels::maps;

namespace {

int failures = 0;

void expect(bool ok, const char* what, int h, int w, int m, int s, long window, int token) {
  if (ok) return;
  if (++failures <= 20)
    std::printf("FAIL %s: H=%d W=%d M=%d s=%d window=%ld token=%d\n", what, h, w, m, s, window, token);
}

// The official construction of the shift regions: slices (0, -M), (-M, -s), (-s, None) along each padded axis.
int official_axis_region(long pos, long length, int m, int s) {
  if (s == 0) return 0;
  if (pos < length - m) return 0;
  if (pos < length - s) return 1;
  return 2;
}

void check_geometry(int h, int w, int m, int s) {
  const maps::WindowGrid g = maps::make_grid(h, w, m, s);
  const long hp = (h + m - 1) / m * m, wp = (w + m - 1) / m * m;
  expect(g.padded_height == hp && g.padded_width == wp, "padded size", h, w, m, s, -1, -1);
  expect(g.windows_per_image == (hp / m) * (wp / m) && g.tokens == m * m, "window count", h, w, m, s, -1, -1);
  // padded map of pixel ids (-1 = padding), rolled by (-s, -s): rolled[y][x] = padded[(y + s) % Hp][(x + s) % Wp]
  std::vector<long> rolled(hp * wp), regions(hp * wp);
  for (long y = 0; y < hp; ++y)
    for (long x = 0; x < wp; ++x) {
      const long sy = (y + s) % hp, sx = (x + s) % wp;
      rolled[y * wp + x] = (sy < h && sx < w) ? sy * w + sx : -1;
      regions[y * wp + x] = official_axis_region(y, hp, m, s) * 3 + official_axis_region(x, wp, m, s);
    }
  std::vector<int> seen(static_cast<size_t>(h) * w, 0);
  for (long win = 0; win < g.windows_per_image; ++win) {
    const long wr = win / (wp / m), wc = win % (wp / m);
    bool mixed = false;
    for (int t = 0; t < m * m; ++t) {
      const long y = wr * m + t / m, x = wc * m + t % m;
      const long pixel = maps::token_pixel(g, win, t);
      expect(pixel == rolled[y * wp + x], "token_pixel", h, w, m, s, win, t);
      expect(maps::token_region(g, win, t) == regions[y * wp + x], "token_region", h, w, m, s, win, t);
      if (pixel >= 0) seen[pixel] += 1;
      mixed = mixed || regions[y * wp + x] != regions[wr * m * wp + wc * m];
    }
    // window_is_masked may be conservative only where no mask applies anyway: it must flag every mixed window.
    expect(!mixed || maps::window_is_masked(g, win), "window_is_masked", h, w, m, s, win, -1);
    expect(s > 0 || !maps::window_is_masked(g, win), "unshifted window masked", h, w, m, s, win, -1);
  }
  for (long p = 0; p < static_cast<long>(h) * w; ++p) expect(seen[p] == 1, "each pixel held once", h, w, m, s, p, -1);
}

// The official relative position index (coords difference, shifted by T-1, row scaled by 2T-1).
void check_relative_index(int m, int table) {
  for (int i = 0; i < m * m; ++i)
    for (int j = 0; j < m * m; ++j) {
      const int d_row = i / m - j / m + table - 1, d_col = i % m - j % m + table - 1;
      const int expected = d_row * (2 * table - 1) + d_col;
      expect(maps::relative_position_index(m, table, i, j) == expected, "relative_position_index", 0, 0, m, table,
             i, j);
      expect(expected >= 0 && expected < (2 * table - 1) * (2 * table - 1), "relative index range", 0, 0, m, table,
             i, j);
    }
}

}  // namespace

int main() {
  int geometries = 0;
  for (int m = 1; m <= 8; ++m)
    for (int s = 0; s < m; ++s)
      for (int h = 1; h <= 19; ++h)
        for (int w = 1; w <= 19; ++w, ++geometries) check_geometry(h, w, m, s);
  check_geometry(56, 56, 7, 3);
  check_geometry(200, 5, 12, 6);
  for (int m = 1; m <= 12; ++m)
    for (int table = m; table <= m + 3; ++table) check_relative_index(m, table);
  // 64-bit: a pixel index past 2^31 stays exact.
  const maps::WindowGrid big = maps::make_grid(70000, 70000, 7, 3);
  expect(maps::token_pixel(big, big.windows_per_image - 1, 0) ==
             (static_cast<int64_t>(big.padded_height - 7 + 3)) * 70000 + (big.padded_width - 7 + 3),
         "64-bit pixel", 70000, 70000, 7, 3, big.windows_per_image - 1, 0);
  if (failures) {
    std::printf("%d mismatches\n", failures);
    return 1;
  }
  std::printf("index maps agree with brute force on %d geometries\n", geometries + 2);
  return 0;
}
