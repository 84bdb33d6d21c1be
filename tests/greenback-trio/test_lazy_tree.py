"""Tree portals load on first use: a cold start imports only the integration."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_tree_portals_load_when_first_asked_for():
    program = textwrap.dedent(
        """
        import sys
        import trio
        import greenback

        async def main():
            await greenback.ensure_portal()
            greenback.await_(trio.sleep(0))

        trio.run(main)
        print("after a portal:", "greenback_trio._tree" in sys.modules)
        import greenback_trio
        print("listed:", "AutoPortalInstrument" in dir(greenback_trio))
        print("same class:", greenback.AutoPortalInstrument is greenback_trio.AutoPortalInstrument)
        print("after asking:", "greenback_trio._tree" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:4] == [
        "after a portal: False",
        "listed: True",
        "same class: True",
        "after asking: True",
    ]
