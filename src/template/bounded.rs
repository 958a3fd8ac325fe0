//! Rendering with a bound on the output: a template whose loops multiply (`range` is capped
//! at 100 000 elements by tera, but two nested loops are not) would otherwise fill the
//! controller's memory before anything noticed. Past the bound the render stops with an error.

use std::io::Write;

/// The most a template or a playbook value may render to. Config files are kilobytes; the
/// inputs they come from are at most `input::MAX_INPUT_BYTES` (4 MiB).
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;

/// A buffer that refuses to grow past `MAX_RENDERED_BYTES`.
#[derive(Default)]
pub struct Bounded {
    buf: Vec<u8>,
    over: bool,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDERED_BYTES {
            self.over = true;
            return Err(std::io::Error::other("rendered output over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a bounded render failed.
pub enum Failed {
    /// The output went past the bound.
    TooLarge,
    /// tera's own error.
    Tera(tera::Error),
}

/// The message for [`Failed::TooLarge`], naming what was rendered.
pub fn too_large(what: &str) -> String {
    format!(
        "{what} renders to more than {} MiB; rendering stopped (loops that multiply?)",
        MAX_RENDERED_BYTES / (1024 * 1024)
    )
}

/// Run `render` into a bounded buffer; the text, or why not.
pub fn render(render: impl FnOnce(&mut Bounded) -> tera::TeraResult<()>) -> Result<String, Failed> {
    let mut out = Bounded::default();
    match render(&mut out) {
        Ok(()) => String::from_utf8(out.buf)
            .map_err(|e| Failed::Tera(tera::Error::message(format!("output is not UTF-8: {e}")))),
        Err(_) if out.over => Err(Failed::TooLarge),
        Err(e) => Err(Failed::Tera(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_bound_stops_the_render() {
        let tera = tera::Tera::default();
        let ctx = tera::Context::new();
        let many = "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}";
        let t = std::time::Instant::now();
        let r = render(|out| tera.render_str_to(many, &ctx, false, out));
        assert!(matches!(r, Err(Failed::TooLarge)));
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
        let small = render(|out| tera.render_str_to("{{ 1 + 1 }}", &ctx, false, out));
        assert_eq!(small.ok().as_deref(), Some("2"));
        let broken = render(|out| tera.render_str_to("{{ 1 / 0 }}", &ctx, false, out));
        assert!(matches!(broken, Err(Failed::Tera(_))));
    }
}
