//! Little-endian integer reads from byte slices, for the stream formats.

/// The `u32` in the first 4 bytes of `b` (which must hold at least 4).
pub(crate) fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// The `u64` in the first 8 bytes of `b` (which must hold at least 8).
pub(crate) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
