//! A minimal reader for the protobuf wire format.
//!
//! It knows nothing about schemas: it splits a byte slice into `(field number, value)`
//! pairs and validates lengths, never reading past the slice it was given.

use crate::error::Malformation;

/// Wire type 0: varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type 1: 8 little-endian bytes.
pub(crate) const FIXED64: u8 = 1;
/// Wire type 2: length-delimited bytes.
pub(crate) const LEN: u8 = 2;
/// Wire type 5: 4 little-endian bytes.
pub(crate) const FIXED32: u8 = 5;

/// The largest field number protobuf allows (2^29 - 1).
pub(crate) const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// One field value as found on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The numeric wire type of this value.
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => VARINT,
            WireValue::Fixed64(_) => FIXED64,
            WireValue::Len(_) => LEN,
            WireValue::Fixed32(_) => FIXED32,
        }
    }
}

/// Sequential reader over one message's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// True once every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads a base-128 varint (at most 10 bytes).
    pub(crate) fn varint(&mut self) -> Result<u64, Malformation> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Malformation::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformation::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformation> {
        let end = self.pos.checked_add(n).ok_or(Malformation::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Malformation::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// Reads the next `(field number, value)` pair, or `None` at the end of the data.
    pub(crate) fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, Malformation> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire_type = (key & 0x7) as u8;
        let number = match key >> 3 {
            0 => return Err(Malformation::FieldNumberZero),
            n => u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_FIELD_NUMBER)
                .ok_or(Malformation::FieldNumberOutOfRange(n))?,
        };
        let value = match wire_type {
            VARINT => WireValue::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let len = self.varint()?;
                let remaining = self.buf.len() - self.pos;
                let n = usize::try_from(len)
                    .ok()
                    .filter(|n| *n <= remaining)
                    .ok_or(Malformation::LengthOutOfBounds(len))?;
                WireValue::Len(self.take(n)?)
            }
            FIXED32 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            other => return Err(Malformation::UnsupportedWireType(other)),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut r = Reader::new(&[0x96, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.varint(), Ok(150));
        assert_eq!(r.varint(), Ok(0));
        assert_eq!(r.varint(), Ok(0xffff_ffff));
        assert!(r.is_empty());
        assert_eq!(Reader::new(&[0x80]).varint(), Err(Malformation::Truncated));
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(Malformation::VarintOverflow)
        );
    }

    #[test]
    fn fields() {
        // field 1 varint 5, field 2 "hi", field 3 fixed32, field 4 fixed64
        let data = [
            0x08, 0x05, 0x12, 0x02, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&data);
        assert_eq!(r.field(), Ok(Some((1, WireValue::Varint(5)))));
        assert_eq!(r.field(), Ok(Some((2, WireValue::Len(b"hi")))));
        assert_eq!(r.field(), Ok(Some((3, WireValue::Fixed32(1)))));
        assert_eq!(r.field(), Ok(Some((4, WireValue::Fixed64(2)))));
        assert_eq!(r.field(), Ok(None));
    }

    #[test]
    fn bad_input() {
        assert_eq!(
            Reader::new(&[0x12, 0x05, b'a']).field(),
            Err(Malformation::LengthOutOfBounds(5))
        );
        assert_eq!(
            Reader::new(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .field(),
            Err(Malformation::LengthOutOfBounds(u64::MAX))
        );
        assert_eq!(
            Reader::new(&[0x02, 0x00]).field(),
            Err(Malformation::FieldNumberZero)
        );
        assert_eq!(
            Reader::new(&[0x0b]).field(),
            Err(Malformation::UnsupportedWireType(3))
        );
        assert_eq!(
            Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]).field(),
            Err(Malformation::FieldNumberOutOfRange(1 << 29))
        );
        assert_eq!(
            Reader::new(&[0x09, 1, 2]).field(),
            Err(Malformation::Truncated)
        );
    }
}
