//! Writes records in presentation form, one per line, atomically where asked.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::name::Name;
use super::{rdata, rtype};

/// Appends one record line to `out`.
pub fn push_record(out: &mut String, owner: &Name, rtype: u16, ttl: u32, data: &[u8]) {
    owner.write_text(out);
    out.push('\t');
    write!(out, "{ttl}").expect("writing to a String");
    out.push_str("\tIN\t");
    out.push_str(&rtype::to_text(rtype));
    out.push('\t');
    match rdata::to_text(rtype, data) {
        Ok(s) => out.push_str(&s),
        Err(_) => {
            // Not expected for data we parsed ourselves; never lose it: write it generically.
            out.push_str(&format!(
                "\\# {} {}",
                data.len(),
                data_encoding::HEXUPPER.encode(data)
            ));
        }
    }
    out.push('\n');
}

/// A file written to a temporary name beside its target and renamed into place on
/// [`AtomicFile::commit`]; dropped without commit, it leaves the target untouched.
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = target.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
        let f = File::create(&tmp)?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            writer: Some(BufWriter::with_capacity(1 << 20, f)),
        })
    }

    /// Sets the file's mode (not subject to the process's umask).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let f = self.writer.as_ref().expect("open").get_ref();
        f.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    pub fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.writer.as_mut().expect("open").write_all(b)
    }

    /// Flushes, syncs and renames the file over its target.
    pub fn commit(mut self) -> io::Result<()> {
        let w = self.writer.take().expect("open");
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.target)?;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
