"""The tile table: (forward, dK/dV, dQ) tiles per GPU family, written by `python -m tools.tune_configs --write`.

TILES[family][(kind, dtype path, BLOCK_D >= 32, multi-block window)] = (forward, dK/dV, dQ), each
(rows, cols, warps, maxnreg): rows tokens per program step (forward: queries; dK/dV: keys; dQ: queries) against cols
per inner step, on warps warps, maxnreg None or ptxas's register cap (255: its own target would spill). Kinds: "map"
(2-D windows up to configs.MAP_TOKENS tokens), "large" (2-D beyond), "volume" (3-D windows). fp16 takes bf16's tiles.

"default" is the first configuration in order of preference without register spills on both sm_80 and sm_90
(dropout on, every optional input present: the most registers); any GPU not named below and the interpreter take
it. "sm_80" / "sm_90" hold only what that family, tuned on its own target, runs otherwise; a key missing there
falls back as configs.tile_shapes says. `--write --family F` rewrites TILES[F] alone: tuning one architecture never
touches another's entries. The compile report checks every family on its own target and the default on both.
"""

TILES = {
    'default': {
        ('map', 'bf16', 32, False): ((64, 64, 4, None), (64, 16, 4, None), (64, 32, 4, 255)),
        ('map', 'bf16', 32, True): ((64, 64, 4, None), (64, 16, 4, 255), (64, 32, 4, 255)),
        ('map', 'bf16', 64, False): ((64, 32, 4, None), (64, 16, 4, None), (64, 16, 4, None)),
        ('map', 'bf16', 64, True): ((64, 64, 4, None), (32, 16, 4, None), (64, 32, 4, None)),
        ('map', 'bf16', 128, False): ((64, 32, 4, 255), (32, 16, 4, None), (32, 16, 4, 255)),
        ('map', 'bf16', 128, True): ((32, 32, 4, 255), (32, 16, 8, None), (32, 16, 4, 255)),
        ('map', 'tf32', 32, False): ((64, 64, 4, None), (64, 16, 4, None), (64, 32, 4, 255)),
        ('map', 'tf32', 32, True): ((64, 32, 4, None), (64, 16, 4, None), (64, 32, 4, 255)),
        ('map', 'tf32', 64, False): ((64, 64, 4, None), (32, 16, 8, None), (64, 16, 4, None)),
        ('map', 'tf32', 64, True): ((64, 64, 4, None), (32, 16, 4, 255), (64, 32, 4, None)),
        ('map', 'tf32', 128, False): ((64, 64, 4, None), (32, 16, 8, None), (32, 16, 8, None)),
        ('map', 'tf32', 128, True): ((32, 32, 4, None), (32, 16, 8, None), (32, 16, 8, None)),
        ('map', 'tf32x3', 32, False): ((64, 64, 4, None), (64, 16, 4, None), (64, 16, 4, None)),
        ('map', 'tf32x3', 32, True): ((64, 64, 4, None), (16, 16, 4, None), (64, 16, 4, None)),
        ('map', 'tf32x3', 64, False): ((32, 32, 8, None), (16, 16, 4, None), (32, 16, 8, None)),
        ('map', 'tf32x3', 64, True): ((32, 32, 4, None), (16, 16, 4, None), (32, 16, 8, None)),
        ('map', 'fp32', 32, False): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp32', 32, True): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp32', 64, False): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp32', 64, True): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp32', 128, False): ((32, 32, 8, 255), (32, 16, 8, 255), (16, 16, 8, 255)),
        ('map', 'fp32', 128, True): ((32, 16, 8, 255), (16, 16, 8, 255), (16, 16, 8, 255)),
        ('map', 'fp64', 32, False): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp64', 32, True): ((32, 32, 8, 255), (32, 16, 8, 255), (32, 16, 8, 255)),
        ('map', 'fp64', 64, False): ((32, 32, 8, 255), (16, 16, 8, 255), (16, 16, 8, 255)),
        ('map', 'fp64', 64, True): ((32, 32, 8, 255), (16, 16, 8, 255), (32, 16, 8, 255)),
        ('large', 'bf16', 32, True): ((64, 64, 4, 255), (64, 16, 4, 255), (64, 32, 4, 255)),
        ('large', 'tf32', 64, True): ((64, 64, 4, None), (32, 16, 4, 255), (64, 16, 4, 255)),
        ('large', 'tf32', 128, True): ((32, 32, 4, None), (16, 16, 8, None), (32, 16, 8, 255)),
        ('volume', 'bf16', 32, False): ((64, 64, 4, None), (64, 16, 4, 255), (64, 32, 4, 255)),
        ('volume', 'bf16', 32, True): ((64, 64, 4, 255), (64, 16, 4, 255), (64, 32, 4, 255)),
        ('volume', 'bf16', 64, True): ((64, 32, 4, None), (32, 16, 4, None), (64, 32, 4, None)),
        ('volume', 'tf32', 64, True): ((64, 64, 4, 255), (32, 16, 4, 255), (64, 16, 4, None)),
        ('volume', 'tf32', 128, False): ((64, 64, 4, None), (32, 16, 8, None), (32, 16, 8, 255)),
        ('volume', 'tf32', 128, True): ((32, 32, 4, 255), (32, 16, 8, None), (16, 16, 4, None)),
        ('volume', 'tf32x3', 32, True): ((64, 32, 4, None), (16, 16, 4, None), (64, 16, 4, None)),
        ('volume', 'fp32', 128, False): ((32, 32, 8, 255), (16, 16, 8, 255), (16, 16, 8, 255)),
    },
    'sm_80': {},
    'sm_90': {
        ('map', 'tf32x3', 32, True): ((64, 64, 4, None), (64, 16, 4, None), (64, 32, 4, None)),
        ('map', 'tf32x3', 64, True): ((32, 32, 4, None), (16, 16, 4, None), (64, 32, 4, None)),
        ('large', 'tf32x3', 64, True): ((32, 32, 4, None), (16, 16, 4, None), (32, 16, 8, None)),
    },
}
