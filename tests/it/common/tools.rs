//! Outside tools some tests need: pdftotext and pdftoppm (poppler-utils), xmllint,
//! promtool and Prometheus, Chromium, zbarimg, the Python venv of tools/pyenv.sh (XSDs,
//! the UBL/EN 16931 validators, schemathesis) and the `../shared/samples` folder.
//!
//! A missing tool skips its check visibly (`SKIPPED: …` on stdout), or, when
//! `TOLLGATE_REQUIRE_TOOLS=1` (tools/test.sh sets it), fails the test with the tool's
//! name and how to install it. `TOLLGATE_REQUIRE_XSD`, the older name that covered the
//! XSD, PDF and QR checks, still counts as `TOLLGATE_REQUIRE_TOOLS=1`.

use std::path::{Path, PathBuf};

/// Must every outside tool be there?
pub fn required() -> bool {
    std::env::var("TOLLGATE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
        || std::env::var_os("TOLLGATE_REQUIRE_XSD").is_some()
}

/// `tool` is missing: fails the test naming it under `TOLLGATE_REQUIRE_TOOLS=1`, else
/// prints `SKIPPED: <tool> is missing (<install>)` and returns `None`.
pub fn missing<T>(tool: &str, install: &str) -> Option<T> {
    if required() {
        panic!("{tool} is missing and TOLLGATE_REQUIRE_TOOLS=1: {install}");
    }
    println!("SKIPPED: {tool} is missing ({install})");
    None
}

/// The program `tool` on the `PATH`, or [`missing`].
pub fn require(tool: &str, install: &str) -> Option<PathBuf> {
    on_path(tool).or_else(|| missing(tool, install))
}

/// The first of `tools` on the `PATH` (alternative names of one program), or [`missing`]
/// naming them all.
pub fn require_any(tools: &[&str], install: &str) -> Option<PathBuf> {
    tools
        .iter()
        .find_map(|t| on_path(t))
        .or_else(|| missing(&tools.join(" or "), install))
}

fn on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Python venv of tools/pyenv.sh: `$TOLLGATE_VENV`, else `/var/tmp/tollgate-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("TOLLGATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/tollgate-venv"))
}

/// The venv's python when it imports every module of `modules` (`"facturx, saxonche"`),
/// or [`missing`] naming them.
pub fn venv_python(modules: &str, install: &str) -> Option<PathBuf> {
    let py = venv().join("bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        missing(&format!("python venv with {modules}"), install)
    }
}

/// A program the venv installed (`bin/<name>`), or [`missing`].
pub fn venv_bin(name: &str, install: &str) -> Option<PathBuf> {
    let bin = venv().join("bin").join(name);
    if bin.is_file() {
        Some(bin)
    } else {
        missing(name, install)
    }
}

/// A file of a PyPI package in the venv (`lib/python*/site-packages/<rel>`), e.g. the
/// pain.008.001.02 XSD of `sepaxml`, or [`missing`].
pub fn venv_file(rel: &str, install: &str) -> Option<PathBuf> {
    let lib = venv().join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path().join("site-packages").join(rel))
            .find(|p| p.is_file())
    });
    found.or_else(|| missing(rel, install))
}

/// The sample files of public projects, `../shared/samples` (see its SOURCES.md), or
/// [`missing`].
pub fn samples() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples");
    if p.is_dir() {
        Some(p)
    } else {
        missing(
            &p.display().to_string(),
            "the shared samples folder beside the repository",
        )
    }
}

/// Chromium, chromedriver and the venv's Python with Selenium, for the browser tests
/// (`None`, or a panic naming the tool under `TOLLGATE_REQUIRE_TOOLS=1`, when one is missing).
pub fn selenium() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let chromium = require_any(
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    )?;
    let driver = require("chromedriver", "apt-get install chromium-driver")?;
    let python = venv_python("selenium", "tools/pyenv.sh 'selenium==4.38.0'")?;
    Some((chromium, driver, python))
}

/// Python for the browser scripts, written before a script's own text: `submit(by, sel)`
/// clicks a control that loads a new page and returns once the old page is gone (it
/// uses the script's global driver `d`, looked up when it is called).
pub const SELENIUM_SUBMIT: &str = r#"
from selenium.common.exceptions import WebDriverException as _WebDriverException
from selenium.webdriver.common.by import By as _By
from selenium.webdriver.support import expected_conditions as _EC
from selenium.webdriver.support.ui import WebDriverWait as _WebDriverWait

def submit(by, sel):
    # Click a control that loads a new page; return once the old page is gone.
    old = d.find_element(_By.TAG_NAME, "html")
    d.find_element(by, sel).click()
    def gone(_):
        try:
            return _EC.staleness_of(old)(d)
        except _WebDriverException as e:
            # Chromedriver may answer for a node of the page being replaced with this
            # instead of a stale-element error: the old page is gone all the same.
            if "does not belong to the document" in str(e):
                return True
            raise
    _WebDriverWait(d, 30).until(gone)
"#;
