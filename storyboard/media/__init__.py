"""The media layer: everything that touches pixels, sound or the ffmpeg binary.

Shared by the render stage (probing a downloaded clip, the last frame of an upstream clip,
the preview animatic) and the stitch stage (the cutter and its seams), so neither imports
the other:

* :mod:`storyboard.media.ffmpeg` locates the ffmpeg binary imageio-ffmpeg ships and runs it,
  always with a deadline (the one place that does);
* :mod:`storyboard.media.probe` reads a clip's length, size, rate, audio and colour, and
  writes its last frame;
* :mod:`storyboard.media.footage` says how much of an extension clip is new footage;
* :mod:`storyboard.media.encoding` is the one encoding of the cut's pieces and seams;
* :mod:`storyboard.media.text` lays out text: title cards, captions;
* :mod:`storyboard.media.animatic` draws the preview backend's animatic;
* :mod:`storyboard.media.mp4` and :mod:`storyboard.media.codecs` read an MP4's sample tables
  and H.264/AAC parameters without running ffmpeg;
* :mod:`storyboard.media.mux` writes the cut's MP4 from copied and encoded samples;
* :mod:`storyboard.media.audiotrack` builds the cut's sound, copying AAC where one clip is
  heard alone.

Failures raise :class:`~storyboard.errors.MediaError`. Importing this package imports
nothing heavy; numpy and Pillow come with the modules that draw.
"""
