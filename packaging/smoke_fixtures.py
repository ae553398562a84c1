"""Run inside a built bundle:   avatar-studio --run-script packaging/smoke_fixtures.py OUT_DIR

Makes, with the bundle's own torch and open_clip, what smoke.sh's text-edit check needs, using the
test suite's fixtures (tests/edits): OUT_DIR/tiny_clip.pt, a tiny open_clip CLIP trained for seconds to
tell red / green / blue tints apart (saved in open_clip's checkpoint format), and OUT_DIR/avatar, a
project holding a tiny trained StyleGAN avatar made from synthetic frames. smoke.sh then adds the CLIP
with `models add clip` and finds a "red" text edit on the avatar, as a user would.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "edits"))   # the fixtures only: studio/models stay the bundle's

import torch  # noqa: E402
from avatars import make_trained_pvp_project  # noqa: E402
from clip_fixture import save_open_clip_checkpoint, train_tiny_clip  # noqa: E402

if len(sys.argv) != 2:
    print("usage: avatar-studio --run-script packaging/smoke_fixtures.py OUT_DIR", file=sys.stderr)
    sys.exit(2)
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
clip, seconds = train_tiny_clip()
save_open_clip_checkpoint(clip, out / "tiny_clip.pt")
make_trained_pvp_project(out / "avatar")
import studio  # noqa: E402

print(f"made {out / 'tiny_clip.pt'} (CLIP trained in {seconds:.1f} s) and {out / 'avatar'} "
      f"(studio from {Path(studio.__file__).parent})")
