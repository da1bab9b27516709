"""The dashboard's pages, one file each, run by st.navigation in dashboard/app.py (a package only so
that they ship with it; importing one draws it)."""
