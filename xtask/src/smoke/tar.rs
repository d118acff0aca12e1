//! A streaming reader of tar archives, enough for `docker save` and the layers inside it: ustar
//! and GNU headers, GNU long names and PAX path and size records. It reads from any `Read`, so a
//! layer inside the saved archive is read straight from the `docker save` pipe, with nothing
//! written to disk.

use std::io::{self, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The path as stored, without a leading `./` or `/`.
    pub path: String,
    pub kind: Kind,
    pub size: u64,
}

pub struct Archive<R> {
    inner: R,
    /// Unread bytes of the current entry's data, then its padding to the next 512-byte block.
    remaining: u64,
    padding: u64,
    done: bool,
}

const BLOCK: usize = 512;

impl<R: Read> Archive<R> {
    pub fn new(inner: R) -> Archive<R> {
        Archive {
            inner,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// The next entry's header, skipping whatever the caller left unread of the previous one;
    /// `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<Header>> {
        if self.done {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut long_name: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? || block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let size = parse_number(&block[124..136])?;
            let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            match block[156] {
                // GNU long name: the data is the next entry's path.
                b'L' => {
                    let data = self.read_small(size, padding)?;
                    long_name = Some(c_string(&data));
                    continue;
                }
                // PAX extended header: `LEN key=value\n` records for the next entry.
                b'x' => {
                    let data = self.read_small(size, padding)?;
                    for (key, value) in pax_records(&data) {
                        match key.as_str() {
                            "path" => pax_path = Some(value),
                            "size" => pax_size = value.parse().ok(),
                            _ => {}
                        }
                    }
                    continue;
                }
                // Global PAX headers, GNU long link names and volume labels name no file.
                b'g' | b'K' | b'V' => {
                    self.skip(size + padding)?;
                    continue;
                }
                _ => {}
            }
            let name = c_string(&block[0..100]);
            let is_ustar = &block[257..262] == b"ustar";
            let prefix = if is_ustar && block[263] == b'0' {
                c_string(&block[345..500])
            } else {
                String::new()
            };
            let stored = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = pax_path.or(long_name).unwrap_or(stored);
            let kind = match block[156] {
                b'0' | 0 | b'7' => Kind::File,
                b'5' => Kind::Dir,
                b'2' => Kind::Symlink,
                b'1' => Kind::HardLink,
                _ => Kind::Other,
            };
            let size = pax_size.unwrap_or(size);
            // Links and directories carry no data even when a size is written.
            let data = if matches!(kind, Kind::File | Kind::Other) {
                size
            } else {
                0
            };
            self.remaining = data;
            self.padding = (BLOCK as u64 - data % BLOCK as u64) % BLOCK as u64;
            return Ok(Some(Header {
                path: clean_path(&path),
                kind,
                size: data,
            }));
        }
    }

    /// The current entry's data as a reader; what it leaves unread is skipped by `next_entry`.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { archive: self }
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a header",
                    ))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads a metadata entry's data (a long name, PAX records), which is small by nature.
    fn read_small(&mut self, size: u64, padding: u64) -> io::Result<Vec<u8>> {
        if size > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a tar metadata entry is larger than 1 MiB",
            ));
        }
        let mut data = vec![0; size as usize];
        self.inner.read_exact(&mut data)?;
        self.skip(padding)?;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        Ok(())
    }
}

pub struct Data<'a, R> {
    archive: &'a mut Archive<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.archive.remaining;
        if left == 0 {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        let read = self.archive.inner.read(&mut buf[..n])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        self.archive.remaining -= read as u64;
        Ok(read)
    }
}

/// A numeric header field: octal digits, or GNU's base-256 for values that do not fit.
fn parse_number(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = 0;
        for &b in &field[1..] {
            value = value.checked_shl(8).unwrap_or(u64::MAX) | u64::from(b);
        }
        return Ok(value);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a tar archive: size field {text:?}"),
        )
    })
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn clean_path(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= space || len > rest.len() {
            break;
        }
        let record = String::from_utf8_lossy(&rest[space + 1..len]);
        if let Some((key, value)) = record.trim_end_matches('\n').split_once('=') {
            records.push((key.to_string(), value.to_string()));
        }
        rest = &rest[len..];
    }
    records
}

/// Writes a tar archive in memory, for the unit tests of this module and of the scanner.
#[cfg(test)]
pub fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in entries {
        let mut header = [0u8; BLOCK];
        let (kind, data): (u8, &[u8]) = match path.strip_suffix('/') {
            Some(_) => (b'5', &[]),
            None => (b'0', data),
        };
        if path.len() > 99 {
            // A GNU long name entry first, as GNU tar writes it.
            let mut long = [0u8; BLOCK];
            long[..13].copy_from_slice(b"././@LongLink");
            long[124..135].copy_from_slice(format!("{:011o}", path.len() + 1).as_bytes());
            long[156] = b'L';
            out.extend_from_slice(&long);
            let mut name = path.as_bytes().to_vec();
            name.push(0);
            name.resize(name.len().div_ceil(BLOCK) * BLOCK, 0);
            out.extend_from_slice(&name);
            header[..99].copy_from_slice(&path.as_bytes()[..99]);
        } else {
            header[..path.len()].copy_from_slice(path.as_bytes());
        }
        header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.extend_from_slice(&[0u8; BLOCK * 2]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Vec<(String, Kind, Vec<u8>)> {
        let mut archive = Archive::new(bytes);
        let mut out = Vec::new();
        while let Some(header) = archive.next_entry().unwrap() {
            let mut data = Vec::new();
            archive.data().read_to_end(&mut data).unwrap();
            out.push((header.path, header.kind, data));
        }
        out
    }

    #[test]
    fn reads_files_directories_and_long_names() {
        let long = format!("app/{}/x.txt", "d".repeat(120));
        let bytes = build(&[
            ("./etc/", b""),
            ("./etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            (&long, b"deep"),
            ("empty", b""),
        ]);
        let entries = read_all(&bytes);
        assert_eq!(entries[0].0, "etc/");
        assert_eq!(entries[0].1, Kind::Dir);
        assert_eq!(entries[1].0, "etc/passwd");
        assert_eq!(entries[1].2, b"root:x:0:0::/root:/bin/sh\n");
        assert_eq!(entries[2].0, long);
        assert_eq!(entries[2].2, b"deep");
        assert_eq!(entries[3].2, b"");
        assert_eq!(entries.len(), 4);
    }

    #[test]
    fn unread_data_is_skipped() {
        let bytes = build(&[("a", &[7u8; 1500]), ("b", b"second")]);
        let mut archive = Archive::new(&bytes[..]);
        archive.next_entry().unwrap().unwrap();
        let mut first = [0u8; 10];
        archive.data().read_exact(&mut first).unwrap();
        let header = archive.next_entry().unwrap().unwrap();
        assert_eq!(header.path, "b");
        let mut data = String::new();
        archive.data().read_to_string(&mut data).unwrap();
        assert_eq!(data, "second");
        assert!(archive.next_entry().unwrap().is_none());
    }

    #[test]
    fn pax_paths_and_sizes_override_the_header() {
        let record = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            // The length counts its own digits.
            let mut len = body.len() + 1;
            if (len.to_string() + &body).len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        let pax = record("path", "a/very/long/name.env");
        let mut bytes = Vec::new();
        let mut header = [0u8; BLOCK];
        header[..4].copy_from_slice(b"pax!");
        header[124..135].copy_from_slice(format!("{:011o}", pax.len()).as_bytes());
        header[156] = b'x';
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(pax.as_bytes());
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        bytes.extend_from_slice(&build(&[("short", b"content")]));
        let entries = read_all(&bytes);
        assert_eq!(entries[0].0, "a/very/long/name.env");
        assert_eq!(entries[0].2, b"content");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![b'x'; BLOCK];
        bytes[124..136].copy_from_slice(b"notoctal!!!!");
        let mut archive = Archive::new(&bytes[..]);
        assert!(archive.next_entry().is_err());
        let truncated = &build(&[("a", &[1u8; 2000])])[..1000];
        let mut archive = Archive::new(truncated);
        archive.next_entry().unwrap();
        let mut sink = Vec::new();
        assert!(archive.data().read_to_end(&mut sink).is_err());
    }
}
