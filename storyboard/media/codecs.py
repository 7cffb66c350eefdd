"""The few codec headers stream copy has to understand: H.264 parameter sets and AAC's config.

Joining coded samples of different files is only safe when the decoder can read every one
of them with the parameters the joined file declares. For H.264 those are the sequence and
picture parameter sets (SPS/PPS) of the ``avcC`` record; for AAC the AudioSpecificConfig.
This module parses just enough of them: :func:`parse_avcc` (the record),
:func:`parse_sps` (size, chroma format, bit depth, colour description, reordering, ids),
:func:`pps_ids`, :func:`nal_types` (the NAL units of one sample) and :func:`parse_asc`.
Everything here is pure: bytes in, facts out; malformed input raises ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Asc",
    "Avcc",
    "Sps",
    "avcc_record",
    "nal_types",
    "parse_asc",
    "parse_avcc",
    "parse_sps",
    "pps_ids",
]

# H.264 profiles whose SPS carries chroma_format_idc and bit depths (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# Table E-1: sample aspect ratios by aspect_ratio_idc.
_SAR = {
    1: (1, 1), 2: (12, 11), 3: (10, 11), 4: (16, 11), 5: (40, 33), 6: (24, 11), 7: (20, 11),
    8: (32, 11), 9: (80, 33), 10: (18, 11), 11: (15, 11), 12: (64, 33), 13: (160, 99),
    14: (4, 3), 15: (3, 2), 16: (2, 1),
}  # fmt: skip
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


class _Bits:
    """An H.264 RBSP (emulation prevention bytes removed) read bit by bit."""

    def __init__(self, data: bytes, *, rbsp: bool = True) -> None:
        # In a NAL unit, 00 00 03 stands for 00 00 (emulation prevention).
        raw = data.replace(b"\x00\x00\x03", b"\x00\x00") if rbsp else data
        self.value = int.from_bytes(raw, "big")
        self.size = len(raw) * 8
        self.pos = 0

    def bits(self, n: int) -> int:
        if self.pos + n > self.size:
            raise ValueError("the parameter set ends early")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def bit(self) -> int:
        return self.bits(1)

    def ue(self) -> int:
        rest = self.value & ((1 << (self.size - self.pos)) - 1)
        zeros = self.size - self.pos - rest.bit_length()
        if zeros > 31 or not rest:
            raise ValueError("a bad Exp-Golomb code")
        self.pos += zeros
        return self.bits(zeros + 1) - 1

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


@dataclass(frozen=True)
class Sps:
    """What a sequence parameter set says about the pictures it describes."""

    sps_id: int
    profile: int
    constraints: int  # the byte between profile_idc and level_idc
    level: int
    chroma_format: int  # 1: 4:2:0
    bit_depth: int  # luma; 8 for ordinary video
    chroma_bit_depth: int
    width: int  # after cropping
    height: int
    progressive: bool  # frame_mbs_only_flag
    sar: tuple[int, int] | None  # None when the SPS does not say
    full_range: bool
    colour: tuple[int, int, int] | None  # (primaries, transfer, matrix); None: not stated
    reorder: int | None  # max_num_reorder_frames; None when not stated


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (its header byte included).

    Raises:
        ValueError: not an SPS, or truncated.
    """
    if not nal or nal[0] & 0x1F != 7:
        raise ValueError("not a sequence parameter set")
    b = _Bits(nal[1:])
    profile, constraints, level = b.bits(8), b.bits(8), b.bits(8)
    sps_id = b.ue()
    chroma, depth, chroma_depth = 1, 8, 8
    if profile in _HIGH_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            b.bit()  # separate_colour_plane_flag
        depth, chroma_depth = b.ue() + 8, b.ue() + 8
        b.bit()  # qpprime_y_zero_transform_bypass_flag
        if b.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if b.bit():
                    _skip_scaling_list(b, 16 if i < 6 else 64)
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.bit()
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.bit()  # gaps_in_frame_num_value_allowed_flag
    mbs_wide, map_units_high = b.ue() + 1, b.ue() + 1
    progressive = bool(b.bit())
    if not progressive:
        b.bit()  # mb_adaptive_frame_field_flag
    b.bit()  # direct_8x8_inference_flag
    width, height = mbs_wide * 16, map_units_high * 16 * (1 if progressive else 2)
    if b.bit():  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = (2 if chroma == 1 else 1) * (1 if progressive else 2)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    sar: tuple[int, int] | None = None
    full_range = False
    colour: tuple[int, int, int] | None = None
    reorder: int | None = None
    if b.bit():  # vui_parameters_present_flag
        if b.bit():  # aspect_ratio_info_present_flag
            idc = b.bits(8)
            sar = (b.bits(16), b.bits(16)) if idc == 255 else _SAR.get(idc)
        if b.bit():  # overscan_info_present_flag
            b.bit()
        if b.bit():  # video_signal_type_present_flag
            b.bits(3)
            full_range = bool(b.bit())
            if b.bit():  # colour_description_present_flag
                colour = (b.bits(8), b.bits(8), b.bits(8))
        if b.bit():  # chroma_loc_info_present_flag
            b.ue()
            b.ue()
        if b.bit():  # timing_info_present_flag
            b.bits(32)
            b.bits(32)
            b.bit()
        hrd = False
        for _ in range(2):  # nal_hrd_parameters, then vcl_hrd_parameters
            if b.bit():
                _skip_hrd(b)
                hrd = True
        if hrd:
            b.bit()  # low_delay_hrd_flag
        b.bit()  # pic_struct_present_flag
        if b.bit():  # bitstream_restriction_flag
            b.bit()  # motion_vectors_over_pic_boundaries_flag
            for _ in range(4):  # max bytes per picture, bits per MB, two MV lengths
                b.ue()
            reorder = b.ue()
    return Sps(
        sps_id, profile, constraints, level, chroma, depth, chroma_depth, width, height,
        progressive, sar, full_range, colour, reorder,
    )  # fmt: skip


def _skip_hrd(b: _Bits) -> None:
    count = b.ue() + 1
    b.bits(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(count):
        b.ue()
        b.ue()
        b.bit()
    b.bits(20)  # four 5-bit lengths


def pps_ids(nal: bytes) -> tuple[int, int]:
    """``(pps_id, sps_id)`` of a PPS NAL unit (header byte included).

    Raises:
        ValueError: not a PPS, or truncated.
    """
    if not nal or nal[0] & 0x1F != 8:
        raise ValueError("not a picture parameter set")
    b = _Bits(nal[1:])
    return b.ue(), b.ue()


@dataclass(frozen=True)
class Avcc:
    """An AVCDecoderConfigurationRecord: NAL length size and the parameter sets."""

    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def parse_avcc(record: bytes) -> Avcc:
    """Split an ``avcC`` record into its parameter sets.

    Raises:
        ValueError: not a version 1 record, or truncated.
    """
    if len(record) < 7 or record[0] != 1:
        raise ValueError("not an AVC decoder configuration record")
    length_size = (record[4] & 3) + 1
    at = 5
    sets: list[list[bytes]] = []
    for mask in (0x1F, 0xFF):
        count = record[at] & mask
        at += 1
        found = []
        for _ in range(count):
            size = int.from_bytes(record[at : at + 2], "big")
            nal = record[at + 2 : at + 2 + size]
            if len(nal) != size:
                raise ValueError("a parameter set runs past the record")
            found.append(nal)
            at += 2 + size
        sets.append(found)
    return Avcc(length_size, tuple(sets[0]), tuple(sets[1]))


def avcc_record(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An ``avcC`` record (4-byte NAL lengths) holding several parameter sets.

    The profile and level it states are those of the most demanding SPS; the constraint
    byte keeps only what every SPS promises. High-profile records end with the chroma
    format and bit depths, which every SPS must share.
    """
    parsed = [parse_sps(nal) for nal in sps]
    profile = max(s.profile for s in parsed)
    constraints = 0xFF
    for s in parsed:
        constraints &= s.constraints
    level = max(s.level for s in parsed)
    out = bytearray([1, profile, constraints, level, 0xFF, 0xE0 | len(sps)])
    for nal in sps:
        out += len(nal).to_bytes(2, "big") + nal
    out.append(len(pps))
    for nal in pps:
        out += len(nal).to_bytes(2, "big") + nal
    if profile in _HIGH_PROFILES:
        first = parsed[0]
        out += bytes(
            [
                0xFC | first.chroma_format,
                0xF8 | (first.bit_depth - 8),
                0xF8 | (first.chroma_bit_depth - 8),
                0,  # no SPS extensions
            ]
        )
    return bytes(out)


def nal_types(sample: bytes, length_size: int = 4) -> list[int]:
    """The NAL unit types of one length-prefixed H.264 sample, in order (as far as it goes)."""
    types = []
    at = 0
    while at + length_size < len(sample):
        size = int.from_bytes(sample[at : at + length_size], "big")
        at += length_size
        if size == 0:
            break
        types.append(sample[at] & 0x1F)
        at += size
    return types


@dataclass(frozen=True)
class Asc:
    """An AAC AudioSpecificConfig: object type, sample rate and channel configuration."""

    object_type: int  # 2: AAC-LC
    sample_rate: int
    channels: int  # channelConfiguration; 0: a program config element decides
    plain: bool  # 1024-sample frames, no core coder, no extensions, no SBR/PS


def parse_asc(config: bytes) -> Asc:
    """Parse an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).

    Raises:
        ValueError: truncated, or a sample rate index that does not exist.
    """
    b = _Bits(config, rbsp=False)
    object_type = b.bits(5)
    if object_type == 31:
        object_type = 32 + b.bits(6)
    index = b.bits(4)
    if index == 15:
        rate = b.bits(24)
    elif index < len(_AAC_RATES):
        rate = _AAC_RATES[index]
    else:
        raise ValueError(f"AAC sample rate index {index} does not exist")
    channels = b.bits(4)
    plain = object_type == 2
    if plain:
        # GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag
        plain = b.bits(3) == 0
    if plain and len(config) * 8 - b.pos >= 16:
        # A backward-compatible SBR signal (as ffmpeg writes it) must say "no SBR".
        sync = b.bits(11)
        plain = sync == 0x2B7 and b.bits(5) == 5 and b.bit() == 0
    return Asc(object_type, rate, channels, plain)
