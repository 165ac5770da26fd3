"""``chronoml server`` with the decision log's evidence step removed (the bench's anchor).

What commitments cost a request is measured against this: the same server,
the same writer, with no leaf hashing and no evidence rows. The product has
no such switch (a decision that is not committed fails ``audit verify``);
only ``bench.py --commitments-off`` starts this, in a store it throws away.
Single-process only (``--workers 1``): workers would import the real writer.
"""

import sys

from chronoml.store import decisions as D
from chronoml.store import evidence as SE

SE.RawAppend.write = lambda self, db, entries: None  # type: ignore[method-assign,assignment]
D.decision_entry = lambda rows: None  # type: ignore[assignment,return-value]

from chronoml.cli import main  # noqa: E402 - after the patch, so the server gets the anchor

sys.exit(main())
