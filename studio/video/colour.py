"""A clip's colours: read from its header, turned into the RGB a player shows, and tagged on the way out.

A phone clip stores YCbCr with a colour matrix (BT.709 for HD, BT.601 for SD), a range (TV 16–235 or full)
and a transfer curve; an iPhone or a recent Android phone records HDR by default (BT.2020 primaries, the HLG
or PQ curve, 10 bits). ffmpeg's RGB conversion uses BT.601 and ignores the curve unless told, so a BT.709
clip came out with its reds and greens a little off, and an HDR clip dark, grey and flat — the avatar
learnt those colours and every export showed them.

- `parse_format` reads the pixel format, range, matrix, primaries, curve and field order (interlaced or
  not) from ffmpeg's description of the stream (`VideoInfo` keeps them).
- `colour_mode` names the conversion a clip needs: "bt709" / "bt601" (SDR: its matrix and range),
  "bt2020" (SDR with wide primaries), "hlg" / "pq" (HDR, tone-mapped to SDR), "rgb" (stored as RGB);
  "" is the conversion of projects made before this module (ffmpeg's default), kept for them so their
  frames stay what they were trained on.
- `to_rgb_filter` is the ffmpeg filter chain from the downscale to 8-bit RGB for a mode.
- `encode_filter`: exports are written as BT.709, TV range, and say so in the file, so
  every player shows the colours the avatar was rendered in.
"""
from __future__ import annotations

HDR_MODES = {"hlg": "arib-std-b67", "pq": "smpte2084"}
"""HDR modes and the transfer curve (ffmpeg's name) each is read with."""

CONVERTED = ("hlg", "pq", "bt2020")
"""The modes whose colours are changed into ordinary (SDR, BT.709) ones, which `new` mentions."""

SDR_WHITE_NITS = 203.0
"""Where HDR puts the white of an ordinary (SDR) picture (ITU-R BT.2408): it becomes RGB white here."""

HDR_PEAK_NITS = 1000.0
"""The brightest an HDR clip is taken to reach (a phone's HLG / PQ recording): highlights between SDR white
and this are rolled off smoothly instead of clipped."""

TONE_KNEE = 0.7
"""Below this share of SDR white (linear light) the tone map leaves the picture as it is (faces, skin),
above it the highlights are compressed (ffmpeg's `tonemap=mobius`). On HDR copies of d3 and d9 made with
SDR white at 203 nits, 0.7 gives back the SDR frames within 2–5 grey levels on average (2.7–3.7 for a
hard clip, which would flatten every highlight)."""

_SDR_MATRIX = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "bt2020nc": "bt2020",
               "bt2020c": "bt2020", "fcc": "bt601", "smpte240m": "bt709"}
_PRIMARIES_MATRIX = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "bt2020": "bt2020"}
_RGB_FORMATS = ("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra", "0rgb", "rgb0", "0bgr", "bgr0", "pal8")


def _split_top(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def parse_format(video_line: str) -> dict:
    """Pixel format, range ("tv" / "pc" / ""), matrix, primaries, transfer curve ("" where the file says nothing)
    and field order ("progressive", "top first", "bottom first", ... or "") from ffmpeg's line for a video
    stream, e.g. "Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67,
    progressive), 3840x2160"."""
    out = {"pix_fmt": "", "color_range": "", "color_space": "", "color_primaries": "", "color_trc": "",
           "field_order": ""}
    at = video_line.find("Video:")
    if at < 0:
        return out
    fields = _split_top(video_line[at + len("Video:"):])
    if len(fields) < 2:
        return out
    fmt = fields[1]
    name, _, inner = fmt.partition("(")
    out["pix_fmt"] = name.strip()
    inner = inner[:-1] if inner.endswith(")") else inner
    for item in (s.strip() for s in inner.split(",")) if inner else ():
        if item in ("tv", "pc"):
            out["color_range"] = item
        elif item.count("/") == 2:
            space, prim, trc = (s.strip() for s in item.split("/"))
            out.update(color_space=space, color_primaries=prim, color_trc=trc)
        elif item in _SDR_MATRIX or item in _PRIMARIES_MATRIX:  # one name: matrix, primaries and curve alike
            out.update(color_space=item, color_primaries=item, color_trc=item)
        elif item == "progressive" or item.startswith(("top ", "bottom ")):
            out["field_order"] = item
    for k in ("color_space", "color_primaries", "color_trc"):
        if out[k] in ("unknown", "reserved"):
            out[k] = ""
    return out


def colour_mode(pix_fmt: str = "", color_space: str = "", color_primaries: str = "", color_trc: str = "",
                width: int = 0, height: int = 0) -> str:
    """The conversion a clip needs to look as a player shows it (see the module's list). Untagged YCbCr is
    read as players read it: BT.709 from 1280x720 up, BT.601 below."""
    if color_trc in ("arib-std-b67",):
        return "hlg"
    if color_trc in ("smpte2084",):
        return "pq"
    if pix_fmt.startswith(_RGB_FORMATS) or color_space == "gbr":
        return "rgb"
    if color_space in _SDR_MATRIX:
        return _SDR_MATRIX[color_space]
    if color_primaries in _PRIMARIES_MATRIX:
        return _PRIMARIES_MATRIX[color_primaries]
    return "bt709" if (width >= 1280 or height >= 720) else "bt601"


def full_range(pix_fmt: str, color_range: str) -> bool:
    return color_range == "pc" or pix_fmt.startswith("yuvj")


def to_rgb_filter(mode: str, width: int, height: int, full: bool = False) -> str:
    """ffmpeg filters from the decoded picture to `width` x `height` 8-bit RGB (`-pix_fmt rgb24` after it):
    the downscale, then the colour conversion `mode` names."""
    size = f"scale={width}:{height}:flags=area"
    rng = "pc" if full else "tv"
    if mode in ("", "rgb"):   # ffmpeg's own conversion (projects made before modes; clips stored as RGB)
        return f"{size},setsar=1"
    if mode in ("bt709", "bt601"):
        return f"{size}:in_color_matrix={mode}:in_range={'full' if full else 'tv'},format=rgb24,setsar=1"
    if mode == "bt2020" or mode in HDR_MODES:
        trc = HDR_MODES.get(mode, "bt2020-10")
        chain = (f"{size},setsar=1,zscale=tin={trc}:min=bt2020nc:pin=bt2020:rin={rng}:t=linear:"
                 f"npl={SDR_WHITE_NITS:g},format=gbrpf32le,zscale=p=bt709")
        if mode in HDR_MODES:
            chain += f",tonemap=mobius:param={TONE_KNEE:g}:desat=0:peak={HDR_PEAK_NITS / SDR_WHITE_NITS:.4f}"
        return chain + ",zscale=t=bt709:m=bt709:r=pc,format=gbrp"
    raise ValueError(f"unknown colour mode {mode!r}")


def describe(mode: str) -> str:
    """A plain phrase for the project's summary."""
    return {"hlg": "HDR (HLG), shown in ordinary colours", "pq": "HDR (PQ / HDR10), shown in ordinary colours",
            "bt2020": "wide-gamut (BT.2020), shown in ordinary colours", "bt709": "BT.709", "bt601": "BT.601",
            "rgb": "RGB", "": "as decoded"}.get(mode, mode)


def encode_filter(pix_fmt: str = "yuv420p") -> str:
    """RGB to YCbCr for an export: the BT.709 matrix, TV range, and the frames marked so, which the encoder writes
    into the file (ffmpeg takes the tags from the frames, not from `-color_primaries` and its kin, once a filter
    has set the matrix), so a player does not have to guess. `pix_fmt`: yuv420p for H.264, yuva444p10le for
    ProRes 4444 with transparency."""
    return (f"scale=out_color_matrix=bt709:out_range=tv,format={pix_fmt},"
            "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv")
