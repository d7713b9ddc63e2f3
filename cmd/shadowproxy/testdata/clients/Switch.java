// Switch prepares server-side statements with PgJDBC (prepareThreshold=1:
// named statements S_n, their result types cached by the driver), writes,
// prints "ready" and waits for a line on stdin, during which
// TestPhaseSwitchCachedStatements switches the proxy from old-only to
// dual-write, then writes again with the same statements; and so on
// through shadow-read and back to old-only.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class Switch {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0] + "&prepareThreshold=1");
                PreparedStatement ins = c.prepareStatement("insert into items (name, qty) values (?, ?) returning id, name");
                PreparedStatement upd = c.prepareStatement("update items set qty = qty + 1 where name = ?");
                PreparedStatement sel = c.prepareStatement("select id, name, qty from items where name like ? order by id")) {
            for (int i = 0; i < 3; i++) {
                insert(ins, "before", "jsw-a-" + i, i);
            }
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            System.out.println("ready");
            System.out.flush();
            in.readLine();
            for (int i = 0; i < 3; i++) {
                insert(ins, "after", "jsw-b-" + i, i);
            }
            upd.setString(1, "jsw-b-0");
            System.out.println("update " + upd.executeUpdate());
            c.setAutoCommit(false);
            insert(ins, "in tx", "jsw-b-tx", 9);
            upd.setString(1, "jsw-b-1");
            System.out.println("update " + upd.executeUpdate());
            c.commit();
            c.setAutoCommit(true);
            // Then shadow-read: the same statements, reads compared.
            System.out.println("ready");
            System.out.flush();
            in.readLine();
            insert(ins, "shadowed", "jsw-b-c", 3);
            sel.setString(1, "jsw-b-%");
            select(sel, "shadowed");
            // And back to old-only: nothing more reaches the new database.
            System.out.println("ready");
            System.out.flush();
            in.readLine();
            insert(ins, "back", "jsw-d-0", 4);
            upd.setString(1, "jsw-b-2");
            System.out.println("update " + upd.executeUpdate());
            sel.setString(1, "jsw-%");
            select(sel, "end");
        }
    }

    static void select(PreparedStatement sel, String label) throws Exception {
        StringBuilder b = new StringBuilder(label);
        try (ResultSet r = sel.executeQuery()) {
            while (r.next()) {
                b.append(' ').append(r.getInt(1)).append('/').append(r.getString(2)).append('/').append(r.getInt(3));
            }
        }
        System.out.println(b);
    }

    static void insert(PreparedStatement ins, String label, String name, int qty) throws Exception {
        ins.setString(1, name);
        ins.setInt(2, qty);
        try (ResultSet r = ins.executeQuery()) {
            r.next();
            System.out.println(label + " " + r.getInt(1) + " " + r.getString(2));
        }
    }
}
