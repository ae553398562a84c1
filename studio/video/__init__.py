"""Video in and out through the ffmpeg binary that imageio-ffmpeg ships.

- `probe` (`studio.video.header`) reads size, rotation tag, sample aspect, frame rate, duration and
  audio presence (a `VideoInfo`); `ffmpeg_exe` finds the bundled ffmpeg. It picks the clip's own
  video stream where a file has several (a cover picture, a second camera), and every reader
  decodes that one.
- `FrameReader` (`studio.video.decode`) streams upright RGB frames one at a time (memory does not
  grow with length), with optional trim, a constant target frame rate (variable-frame-rate phone
  clips are resampled to it), a downscale cap for very large videos, the clip's colours as a player
  shows them (`studio.video.colour`) and a turn for a clip whose face lies on its side, as
  `plan_decode` chose them (a `DecodeSettings`); `sample_frames` jumps to a few frames spread over
  it. It also watches the decoder: frames that could not be decoded and
  decoder errors end up in `FrameReader.report` (a `DecodeReport`). With `prefetch`, a thread
  reads frames ahead into a bounded queue; `start()` begins decoding before the first frame is
  asked for. A trim of a file without a keyframe index (.mts, .ts) is decoded from the beginning
  instead of jumping between keyframes.
- `studio.video.damage` finds missing and damaged stretches in timestamps and ffmpeg's log
  (`find_gaps`, `damaged_spans`, `merge_spans`), for the reader and the scan alike.
- `scan_media` (`studio.video.scan`) reads every packet's timestamp without decoding (fast): a clip
  cut short, or with stretches of video or audio missing, is found at ingest (a `MediaScan`).
  `extract_audio` keeps the audio track (trimmed to the same span) for export; `media_duration`
  counts frames by decoding (for tests and checks).
- `ClipWriter` (`studio.video.encode`) writes a clip the other way: RGB frames streamed to an MP4 (with
  the audio track), a GIF or PNG frames under a temporary name, renamed into place when complete;
  `check_output` refuses an output that cannot be written before anything is rendered.

Everything but `studio.video.encode` is importable from `studio.video` itself.
"""
from .damage import GAP_MIN_S, SNAP_BACK_S, damaged_spans, find_gaps, gap_limit, merge_spans
from .decode import (PREFETCH_BYTES, TURNS, DecodeReport, DecodeSettings, FrameReader, plan_decode,
                     prefetch_frames, read_frames, sample_frames)
from .header import NO_INDEX, VideoInfo, ffmpeg_exe, probe
from .scan import MediaScan, StreamScan, _NoAudio, extract_audio, media_duration, scan_media

__all__ = [
    # header
    "NO_INDEX", "VideoInfo", "ffmpeg_exe", "probe",
    # damage
    "GAP_MIN_S", "SNAP_BACK_S", "damaged_spans", "find_gaps", "gap_limit", "merge_spans",
    # decode
    "PREFETCH_BYTES", "TURNS", "DecodeReport", "DecodeSettings", "FrameReader", "plan_decode", "prefetch_frames",
    "read_frames", "sample_frames",
    # scan (`_NoAudio` is private but `studio.stages.ingest` catches it)
    "MediaScan", "StreamScan", "_NoAudio", "extract_audio", "media_duration", "scan_media",
]
