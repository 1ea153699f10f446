'use strict';
// Deterministic large text and its checksum; used by activities and
// workflows alike (no Node APIs, so it can be bundled into workflow code).

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

// `size` characters of pseudo-random text (a 32-bit LCG), the same every time.
function makeText(size) {
  const chunk = 65536;
  const parts = [];
  let state = 12345;
  for (let done = 0; done < size; done += chunk) {
    const n = Math.min(chunk, size - done);
    const chars = new Array(n);
    for (let i = 0; i < n; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      chars[i] = ALPHABET[state >>> 26];
    }
    parts.push(chars.join(''));
  }
  return parts.join('');
}

// FNV-1a over the UTF-16 code units, as 8 hex digits.
function checksum(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

module.exports = { makeText, checksum };
