/**
 * The frame size an H.264 decoder reports (after cropping), from the first sequence parameter set
 * of an mp4 `avcC` box: `probeMp4` checks its sample entry's size against it. Throws
 * `SpsError` on anything it cannot read (probeMp4 then leaves the file to ffprobe).
 */

export class SpsError extends Error {}

function check(cond: boolean): asserts cond {
  if (!cond) throw new SpsError('unreadable H.264 sequence parameter set');
}

/** Frame size (after cropping) from the first SPS of an avcC box: what FFmpeg's decoder reports. */
export function avcFrameSize(buf: Buffer, avcC: { start: number; end: number }): { width: number; height: number } {
  check(avcC.end - avcC.start >= 8 && buf.readUInt8(avcC.start) === 1);
  check((buf.readUInt8(avcC.start + 5) & 0x1f) >= 1);
  const len = buf.readUInt16BE(avcC.start + 6);
  check(avcC.start + 8 + len <= avcC.end && len > 4);
  // Drop emulation-prevention bytes (00 00 03).
  const raw = buf.subarray(avcC.start + 8, avcC.start + 8 + len);
  const rbsp: number[] = [];
  for (let i = 0, zeros = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    zeros = b === 0 ? zeros + 1 : 0;
    rbsp.push(b);
  }
  check((rbsp[0]! & 0x1f) === 7);
  const bits = new BitReader(rbsp, 1);
  const profile = bits.u(8);
  bits.u(16); // constraint flags, level
  bits.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  let separatePlanes = 0;
  if ([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].includes(profile)) {
    chromaFormat = bits.ue();
    check(chromaFormat <= 3);
    if (chromaFormat === 3) separatePlanes = bits.u(1);
    bits.ue(); // bit_depth_luma_minus8
    bits.ue(); // bit_depth_chroma_minus8
    bits.u(1); // qpprime_y_zero_transform_bypass_flag
    if (bits.u(1)) {
      // seq_scaling_matrix_present_flag: skip the scaling lists.
      for (let i = 0; i < (chromaFormat !== 3 ? 8 : 12); i++) {
        if (!bits.u(1)) continue;
        let last = 8;
        let next = 8;
        for (let j = 0; j < (i < 6 ? 16 : 64) && next !== 0; j++) {
          next = (last + bits.se() + 256) % 256;
          if (next !== 0) last = next;
        }
      }
    }
  }
  bits.ue(); // log2_max_frame_num_minus4
  const pocType = bits.ue();
  if (pocType === 0) bits.ue();
  else if (pocType === 1) {
    bits.u(1);
    bits.se();
    bits.se();
    const cycle = bits.ue();
    check(cycle <= 255);
    for (let i = 0; i < cycle; i++) bits.se();
  } else check(pocType === 2);
  bits.ue(); // max_num_ref_frames
  bits.u(1); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = bits.ue() + 1;
  const heightUnits = bits.ue() + 1;
  const frameMbsOnly = bits.u(1);
  if (!frameMbsOnly) bits.u(1); // mb_adaptive_frame_field_flag
  bits.u(1); // direct_8x8_inference_flag
  let width = widthMbs * 16;
  let height = heightUnits * 16 * (2 - frameMbsOnly);
  if (bits.u(1)) {
    const [l, r, t, b] = [bits.ue(), bits.ue(), bits.ue(), bits.ue()];
    const arrayType = separatePlanes ? 0 : chromaFormat;
    const cropX = arrayType === 0 ? 1 : arrayType === 3 ? 1 : 2;
    const cropY = (arrayType === 1 ? 2 : 1) * (2 - frameMbsOnly);
    width -= cropX * (l + r);
    height -= cropY * (t + b);
  }
  check(width > 0 && height > 0);
  return { width, height };
}

/** Reads big-endian bits and Exp-Golomb codes; throws SpsError past the end. */
class BitReader {
  private pos: number;
  constructor(private readonly bytes: number[], startByte: number) {
    this.pos = startByte * 8;
  }
  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const byte = this.bytes[this.pos >> 3];
      check(byte !== undefined);
      v = v * 2 + ((byte >> (7 - (this.pos & 7))) & 1);
      this.pos++;
    }
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) check(++zeros < 32);
    return 2 ** zeros - 1 + this.u(zeros);
  }
  se(): number {
    const k = this.ue();
    return k & 1 ? (k + 1) / 2 : -(k / 2);
  }
}

