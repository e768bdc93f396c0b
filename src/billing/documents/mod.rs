//! Renderings of a stored document: UBL 2.1 XML and the PDF. They depend on the
//! document model only and never change an amount.

mod fonts;
pub mod pdf;
pub mod qr;
pub mod ubl;
pub mod units;
