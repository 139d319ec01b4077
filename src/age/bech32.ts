// Bech32 (BIP 173) without the 90-character limit, as age writes its recipients and identities.

const BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BECH32_GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) {
      if ((top >>> i) & 1) chk ^= BECH32_GENERATOR[i] as number;
    }
  }
  return chk >>> 0;
}

function hrpExpand(hrp: string): number[] {
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  return [...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31)];
}

function convertBits(
  data: readonly number[],
  from: number,
  to: number,
  pad: boolean,
): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const max = (1 << to) - 1;
  for (const v of data) {
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & max);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & max);
  } else if (bits >= from || acc !== 0) {
    return undefined;
  }
  return out;
}

export function bech32Encode(hrp: string, data: Uint8Array): string {
  const words = convertBits([...data], 8, 5, true) as number[];
  const polymod = bech32Polymod([...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (polymod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...words, ...checksum].map((w) => BECH32_CHARSET[w]).join("")}`;
}

/** The HRP comes back lowercase; mixed case is refused, as BIP 173 requires. */
export function bech32Decode(text: string): { hrp: string; data: Uint8Array } | undefined {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return undefined;
  const lower = text.toLowerCase();
  const sep = lower.lastIndexOf("1");
  if (sep < 1 || lower.length - sep - 1 < 6) return undefined;
  const hrp = lower.slice(0, sep);
  if (![...hrp].every((c) => c >= "!" && c <= "~")) return undefined;
  const words = [...lower.slice(sep + 1)].map((c) => BECH32_CHARSET.indexOf(c));
  if (words.some((w) => w === -1)) return undefined;
  if (bech32Polymod([...hrpExpand(hrp), ...words]) !== 1) return undefined;
  const bytes = convertBits(words.slice(0, -6), 5, 8, false);
  return bytes === undefined ? undefined : { hrp, data: new Uint8Array(bytes) };
}
