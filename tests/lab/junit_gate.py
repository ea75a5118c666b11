"""Read the lab's JUnit report on the host; fail unless lab tests ran and passed."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(junit: str, rc_file: str) -> int:
    path = Path(junit)
    if not path.exists():
        print("lab: no test report came back: the lab did not boot or pytest did not run")
        return 1
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    total = int(suite.get("tests", "0"))
    failed = int(suite.get("failures", "0")) + int(suite.get("errors", "0"))
    skipped = int(suite.get("skipped", "0"))
    rc = Path(rc_file).read_text().strip() if Path(rc_file).exists() else "missing"
    passed = total - failed - skipped
    print(f"lab: {passed} passed, {failed} failed, {skipped} skipped (pytest status {rc})")
    if total == 0 or passed == 0:
        print("lab: no lab test ran")
        return 1
    return 0 if failed == 0 and skipped == 0 and rc == "0" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
