//! Look up system users and groups in a sysroot's `/etc/passwd` and
//! `/etc/group` (read directly, so lookups work for any sysroot).

use crate::sysroot::Sysroot;
use anyhow::Context;
use std::io;

fn lookup(root: &Sysroot, file: &str, name: &str) -> anyhow::Result<Option<u32>> {
    let path = root.path(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(id_in(&text, name))
}

/// The numeric id (third field) of `name` in passwd- or group-format text.
pub fn id_in(text: &str, name: &str) -> Option<u32> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            fields.nth(1)?.parse().ok()
        })
}

/// The uid of `user`, if the user exists.
pub fn uid(root: &Sysroot, user: &str) -> anyhow::Result<Option<u32>> {
    lookup(root, "/etc/passwd", user)
}

/// The gid of `group`, if the group exists.
pub fn gid(root: &Sysroot, group: &str) -> anyhow::Result<Option<u32>> {
    lookup(root, "/etc/group", group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_by_exact_name() {
        let text = "root:x:0:0:root:/root:/bin/bash\nze:x:998:997::/etc/ze:/usr/sbin/nologin\nzed:x:5:5::/:/bin/sh\n";
        assert_eq!(id_in(text, "ze"), Some(998));
        assert_eq!(id_in(text, "root"), Some(0));
        assert_eq!(id_in(text, "z"), None);
        assert_eq!(id_in("ze:x:notanumber:1\n", "ze"), None);
    }
}
