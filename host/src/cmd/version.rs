//! `ze version`: version, build date and commit; on an appliance, the
//! installed image from its baked manifest (checklist A9).

use crate::{context::Context, version};

/// Run `ze version`.
pub fn run(ctx: &Context) -> anyhow::Result<()> {
    print!("{}", version::text(ctx));
    Ok(())
}
